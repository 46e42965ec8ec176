import { EXIT } from './exit.js';

/**
 * Ctrl-C once aborts the returned signal (the command cancels its work within a step and exits
 * 130); twice quits at once. Call `dispose` when the command ends.
 */
export function abortOnSigint(message: string): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    if (++interrupts > 1) process.exit(EXIT.INTERRUPTED);
    process.stderr.write(`\ninterrupted: ${message} (Ctrl-C again to quit at once)\n`);
    controller.abort(new Error('SIGINT'));
  };
  process.on('SIGINT', onSigint);
  return { signal: controller.signal, dispose: () => process.off('SIGINT', onSigint) };
}

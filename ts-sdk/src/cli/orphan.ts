/**
 * Run through a wrapper that starts the CLI as its child (tsx does, when the CLI runs from source),
 * the CLI must not outlive the wrapper: a SIGKILLed wrapper cannot pass its signal on, and the CLI
 * would go on training, with its workers, with nobody to see it. When the parent at start is such a
 * wrapper and the CLI is re-parented, it interrupts itself as Ctrl-C would (workers stop with it).
 * A CLI started from a shell is left alone: `nohup afa sweep ... &` must survive its terminal.
 */
import { readFileSync } from 'node:fs';

const WRAPPERS = /(^|\/)tsx(\.js|\.mjs|\.cjs)?$|\/tsx\/dist\/cli\.m?js$/;

function parentIsWrapper(): boolean {
  try {
    const argv = readFileSync(`/proc/${process.ppid}/cmdline`, 'utf8').split('\0');
    return argv.slice(0, 3).some((arg) => WRAPPERS.test(arg));
  } catch {
    return false; // no /proc (not Linux): nothing to watch
  }
}

export function exitWithWrapper(intervalMs = 1000): void {
  if (!parentIsWrapper()) return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    process.stderr.write(`afa: the wrapper that started this command (pid ${parent}) is gone; stopping\n`);
    process.kill(process.pid, 'SIGINT');
    setTimeout(() => process.kill(process.pid, 'SIGINT'), 30_000).unref(); // the second Ctrl-C: quit at once
  }, intervalMs);
  timer.unref();
}

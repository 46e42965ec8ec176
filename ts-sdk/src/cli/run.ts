import type { Command } from 'commander';
import { AfaError, CancelledError, FieldError } from '../errors.js';
import { parseExperiment } from '../dsl/validate.js';
import { Worker } from '../worker/worker.js';
import { EXIT } from './exit.js';
import { abortOnSigint } from './interrupt.js';
import { loadSpecFile } from './load.js';
import { Progress } from '../report/progress.js';
import { formatResult } from '../report/result.js';

/** Exit code for an error: 2 for a bad spec or flag (any field error), 130 for an interrupt, 1 otherwise. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof FieldError) return EXIT.BAD_SPEC;
  if (error instanceof CancelledError) return EXIT.INTERRUPTED;
  return EXIT.FAILURE;
}

interface RunCliOptions {
  json?: boolean;
  worker?: string;
  python?: string;
  threads?: string;
  checkpoint?: string;
  cacheDir?: string;
}

export function registerRun(program: Command): void {
  program
    .command('run <file>')
    .description('run an experiment from a .ts/.js file (default export) or a .json spec')
    .option('--json', 'print the result as JSON on stdout (progress stays on stderr)')
    .option('--worker <address>', 'use a running worker instead of starting one')
    .option('--python <path>', 'Python interpreter for a started worker')
    .option('--threads <n>', 'torch CPU threads for a started worker')
    .option('--checkpoint <path>', 'where to write the final model (default: under the cache)')
    .option('--cache-dir <dir>', 'pretrained sources and run outputs (default: $AFA_CACHE or ~/.cache/afa-transfer/cache)')
    .action(async (file: string, opts: RunCliOptions) => {
      process.exitCode = await runCommand(file, opts);
    });
}

async function runCommand(file: string, opts: RunCliOptions): Promise<number> {
  const interrupt = abortOnSigint('cancelling the running stage');
  const progress = new Progress();
  let worker: Worker | undefined;
  try {
    const spec = parseExperiment(await loadSpecFile(file));
    worker = opts.worker
      ? await Worker.connect(opts.worker)
      : await Worker.start({ python: opts.python, threads: opts.threads ? Number(opts.threads) : undefined, signal: interrupt.signal });
    const run = worker.run(spec, { signal: interrupt.signal, checkpoint: opts.checkpoint, cacheDir: opts.cacheDir });
    for await (const event of run.events) progress.handle(event);
    const result = await run.result;
    if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else process.stdout.write(`\n${formatResult(result)}\n`);
    return EXIT.OK;
  } catch (error) {
    progress.close();
    const code = interrupt.signal.aborted ? EXIT.INTERRUPTED : exitCodeFor(error);
    const message = error instanceof AfaError ? error.message : error instanceof Error ? error.stack ?? error.message : String(error);
    process.stderr.write(`afa run: ${code === EXIT.INTERRUPTED ? 'interrupted' : message}\n`);
    return code;
  } finally {
    interrupt.dispose();
    await worker?.stop();
  }
}

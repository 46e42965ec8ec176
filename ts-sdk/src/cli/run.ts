import type { Command } from 'commander';
import { checkAttentionImages } from '../run/session.js';
import { parseExperiment } from '../dsl/validate.js';
import { Worker } from '../worker/worker.js';
import { EXIT, reportFailure } from './exit.js';
import { abortOnSigint } from './interrupt.js';
import { loadSpecFile } from './spec-file.js';
import { Progress } from '../report/progress.js';
import { formatResult } from '../report/result.js';
import { renderRunReport } from '../report/run-report.js';
import { writeFileAtomically } from '../atomic-write.js';
import { toJsonText } from '../run/result-file.js';
import { TensorBoardWriter } from '../report/tensorboard.js';
import { resolve } from 'node:path';

interface RunCliOptions {
  json?: boolean;
  worker?: string;
  python?: string;
  threads?: string;
  checkpoint?: string;
  cacheDir?: string;
  report?: string;
  attentionImages: string;
  tensorboard?: string;
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
    .option('--report <file>', 'write an HTML report of the run: stages, curves, where the attention looks')
    .option('--tensorboard <dir>', 'write TensorBoard event files into <dir>/<experiment name>')
    .option('--attention-images <n>', 'images on which stages with attention show where it looks (0-16)', '4')
    .action(async (file: string, opts: RunCliOptions) => {
      process.exitCode = await runCommand(file, opts);
    });
}

async function runCommand(file: string, opts: RunCliOptions): Promise<number> {
  const interrupt = abortOnSigint('cancelling the running stage');
  const progress = new Progress();
  let worker: Worker | undefined;
  let board: TensorBoardWriter | undefined;
  try {
    const attentionImages = checkAttentionImages(Number(opts.attentionImages), '--attention-images');
    const spec = parseExperiment(await loadSpecFile(file));
    // Before the worker: a Python that cannot write event files fails now, not after the training.
    board = opts.tensorboard ? await TensorBoardWriter.open(opts.tensorboard, { python: opts.python }) : undefined;
    worker = opts.worker
      ? await Worker.connect(opts.worker)
      : await Worker.start({ python: opts.python, threads: opts.threads ? Number(opts.threads) : undefined, signal: interrupt.signal });
    const run = worker.run(spec, { signal: interrupt.signal, checkpoint: opts.checkpoint, cacheDir: opts.cacheDir,
      attentionImages });
    const boardRun = board?.run(spec.name);
    for await (const event of run.events) {
      progress.handle(event);
      boardRun?.handle(event);
    }
    const boardWarning = await board?.close();
    board = undefined;
    if (boardWarning) process.stderr.write(`warning: TensorBoard: ${boardWarning}\n`);
    const result = await run.result;
    if (opts.json) process.stdout.write(toJsonText(result));
    else process.stdout.write(`\n${formatResult(result)}\n`);
    if (opts.report) {
      const path = resolve(opts.report);
      writeFileAtomically(path, renderRunReport({ spec, result }));
      process.stderr.write(`report: ${path}\n`);
    }
    return EXIT.OK;
  } catch (error) {
    progress.close();
    return reportFailure('run', error, interrupt.signal.aborted);
  } finally {
    interrupt.dispose();
    await board?.close().catch(() => undefined);
    await worker?.stop();
  }
}

import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { AfaError } from '../errors.js';
import { SweepProgress } from '../report/sweep-progress.js';
import { planSlots } from '../sweep/pool.js';
import { runSweep } from '../sweep/runner.js';
import { parseSweep } from '../sweep/validate.js';
import { bestSpec, formatSummaryTable, summarize } from '../sweep/summary.js';
import { EXIT } from './exit.js';
import { abortOnSigint } from './interrupt.js';
import { loadSpecFile } from './load.js';
import { exitCodeFor } from './run.js';
import { TensorBoardWriter, type TensorBoardRun } from '../report/tensorboard.js';
import { configLabel, type TrialPlan } from '../sweep/trials.js';
import type { RunEvent } from '../run/events.js';

interface SweepCliOptions {
  workers: string;
  worker?: string[];
  out?: string;
  resume?: boolean;
  forceNew?: boolean;
  earlyStop: string;
  threads?: string;
  python?: string;
  maxAttempts: string;
  tensorboard?: string;
  ray?: string | true;
  cpusPerWorker?: string;
  gpusPerWorker?: string;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function registerSweep(program: Command): void {
  program
    .command('sweep <file>')
    .description('run a hyperparameter sweep (a .ts/.js file exporting sweep({...}), or .json)')
    .option('--workers <n>', 'local workers to start (CPU threads are split among them)', '1')
    .option('--worker <host:port>', 'a running worker to use (repeatable; replaces local workers)', collect)
    .option('--out <dir>', 'output directory (default: ./afa-sweeps/<sweep name>)')
    .option('--resume', 'skip trials already in the results file')
    .option('--force-new', "archive another sweep's results found in the output directory and start this one")
    .option('--early-stop <rule>', 'stop trials early: none | median', 'none')
    .option('--threads <n>', 'torch threads per local worker')
    .option('--python <path>', 'Python interpreter for local workers')
    .option('--max-attempts <n>', 'attempts per trial when its worker crashes', '2')
    .option('--ray [address]', "run the workers as Ray actors: on the cluster at ADDRESS (host:port of its GCS), 'auto' " +
      "($RAY_ADDRESS or the cluster started on this machine; the default), or 'local' (a throwaway one)")
    .option('--cpus-per-worker <n>', 'with --ray: CPUs each worker actor reserves (default 1; also its torch threads unless --threads)')
    .option('--gpus-per-worker <n>', 'with --ray: GPUs each worker actor reserves (default 1 where the cluster has GPUs, else 0)')
    .option('--tensorboard <dir>', 'write TensorBoard event files, one run directory per trial named by its labels')
    .action(async (file: string, opts: SweepCliOptions) => {
      process.exitCode = await sweepCommand(file, opts);
    });
}

async function sweepCommand(file: string, opts: SweepCliOptions): Promise<number> {
  const interrupt = abortOnSigint('cancelling running trials; finished ones are kept (rerun with --resume)');
  const progress = new SweepProgress();
  try {
    const sweep = parseSweep(await loadSpecFile(file));
    if (!['none', 'median'].includes(opts.earlyStop)) throw new UsageError('--early-stop', `unknown rule ${opts.earlyStop}`, ['none', 'median']);
    const workers = Number(opts.workers);
    if (!Number.isInteger(workers) || workers < 1) throw new UsageError('--workers', `must be a whole number >= 1, got ${opts.workers}`);
    const outDir = resolve(opts.out ?? join('afa-sweeps', sweep.name.replace(/[^A-Za-z0-9_.-]+/g, '-')));
    const board = opts.tensorboard ? await TensorBoardWriter.open(opts.tensorboard, { python: opts.python }) : undefined;
    const boardRuns = new Map<string, TensorBoardRun>();
    const onTrialEvent = board && ((trial: TrialPlan, event: RunEvent) => {
      if (event.type === 'stage-start' && event.index === 0 && event.phase === 'transfer') boardRuns.delete(trial.trialId); // a retry starts over
      let run = boardRuns.get(trial.trialId);
      if (!run) boardRuns.set(trial.trialId, (run = board.run(`${configLabel(trial.labels, ' ') || 'base'} seed=${trial.seed}`)));
      run.handle(event);
    });
    const threads = opts.threads ? Number(opts.threads) : undefined;
    if (opts.ray !== undefined && opts.worker?.length) throw new UsageError('--ray', 'give --ray or --worker, not both');
    if (opts.ray === undefined && (opts.cpusPerWorker || opts.gpusPerWorker)) {
      throw new UsageError(opts.cpusPerWorker ? '--cpus-per-worker' : '--gpus-per-worker', 'applies to Ray workers only (with --ray)');
    }
    const ray = opts.ray === undefined ? undefined : {
      address: opts.ray === true ? 'auto' : opts.ray,
      workers,
      threads,
      cpusPerWorker: opts.cpusPerWorker === undefined ? undefined : Number(opts.cpusPerWorker),
      gpusPerWorker: opts.gpusPerWorker === undefined ? undefined : Number(opts.gpusPerWorker),
    };
    const slots = planSlots({ local: workers, remote: opts.worker, ray, threads, python: opts.python });
    const outcome = await runSweep(sweep, {
      outDir,
      slots,
      resume: opts.resume,
      forceNew: opts.forceNew,
      earlyStop: opts.earlyStop as 'none' | 'median',
      maxAttempts: Number(opts.maxAttempts),
      signal: interrupt.signal,
      onEvent: (e) => progress.handle(e),
      onTrialEvent,
    }).finally(() => board?.close());
    progress.close();
    const summaries = summarize(outcome.records, sweep.metric, sweep.goal);
    process.stdout.write(`\n${sweep.name}: ${outcome.records.length} trials in ${outDir}/results.jsonl ` +
      `(selection on ${sweep.metric}, validation only)\n\n${formatSummaryTable(summaries, sweep.metric)}\n`);
    const best = summaries.find((s) => s.n > 0);
    if (best) {
      const spec = bestSpec(sweep, best);
      const path = join(outDir, 'best.json');
      writeFileSync(path, `${JSON.stringify(spec, null, 2)}\n`);
      process.stdout.write(`\nbest configuration (runnable: afa run ${path}):\n${JSON.stringify(best.labels)}\n`);
    }
    if (outcome.interrupted) {
      process.stderr.write('afa sweep: interrupted; rerun with --resume to finish the remaining trials\n');
      return EXIT.INTERRUPTED;
    }
    return EXIT.OK;
  } catch (error) {
    progress.close();
    const code = interrupt.signal.aborted ? EXIT.INTERRUPTED : exitCodeFor(error);
    process.stderr.write(`afa sweep: ${error instanceof AfaError ? error.message : error instanceof Error ? error.stack : String(error)}\n`);
    return code;
  } finally {
    interrupt.dispose();
  }
}

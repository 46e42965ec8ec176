import type { Command } from 'commander';
import { join, resolve } from 'node:path';
import { writeFileAtomically } from '../atomic-write.js';
import { UsageError } from '../errors.js';
import { Fields } from '../fields.js';
import { SweepProgress } from '../report/sweep-progress.js';
import { planSlots, type WorkerSlot } from '../sweep/pool.js';
import { runSweep, type SweepOutcome } from '../sweep/runner.js';
import { SEARCHES, type SweepSpec } from '../sweep/space.js';
import { parseSweep } from '../sweep/validate.js';
import { bestSpec, formatSummaryTable, summarize } from '../sweep/summary.js';
import { EXIT, reportFailure } from './exit.js';
import { abortOnSigint } from './interrupt.js';
import { loadSpecFile } from './spec-file.js';
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
  search?: string;
  budget?: string;
  warmupSteps?: string;
  minTrials?: string;
  storage?: string;
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
    .option('--search <how>', `override the sweep's search: ${SEARCHES.join(' | ')} (tpe, gp, cmaes: Optuna's samplers)`)
    .option('--budget <n>', 'configurations for random and adaptive search (each runs once per seed)')
    .option('--early-stop <rule>', "stop trials early: none | median | asha | hyperband (asha and hyperband: Optuna's pruners)", 'none')
    .option('--warmup-steps <n>', 'steps before a pruner may stop a trial (default 0)')
    .option('--min-trials <n>', 'completed trials the median rule waits for (default 3)')
    .option('--storage <url>', 'the Optuna study\'s storage: a journal file or postgresql+psycopg://... shared by several drivers ' +
      '(default: study.journal in the output directory)')
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

/** The worker slots the flags ask for: Ray actors, running workers, or local ones. */
function slotsFromFlags(opts: SweepCliOptions, workers: number, threads: number | undefined): WorkerSlot[] {
  if (opts.ray !== undefined && opts.worker?.length) throw new UsageError('--ray', 'give --ray or --worker, not both');
  if (opts.ray === undefined && (opts.cpusPerWorker || opts.gpusPerWorker)) {
    throw new UsageError(opts.cpusPerWorker ? '--cpus-per-worker' : '--gpus-per-worker', 'applies to Ray workers only (with --ray)');
  }
  const ray = opts.ray === undefined ? undefined : {
    address: opts.ray === true ? 'auto' : opts.ray,
    workers,
    threads,
    cpusPerWorker: opts.cpusPerWorker === undefined ? undefined : Fields.usage('--cpus-per-worker').number(opts.cpusPerWorker, { min: 0, max: 1024 }),
    gpusPerWorker: opts.gpusPerWorker === undefined ? undefined : Fields.usage('--gpus-per-worker').number(opts.gpusPerWorker, { min: 0, max: 64 }),
  };
  return planSlots({ local: workers, remote: opts.worker, ray, threads, python: opts.python });
}

/** Each trial's events into its own TensorBoard run, named by its labels; a retry starts its run over. */
function boardHandler(board: TensorBoardWriter): (trial: TrialPlan, event: RunEvent) => void {
  const runs = new Map<string, TensorBoardRun>();
  return (trial, event) => {
    if (event.type === 'stage-start' && event.index === 0 && event.phase === 'transfer') runs.delete(trial.trialId);
    let run = runs.get(trial.trialId);
    if (!run) runs.set(trial.trialId, (run = board.run(`${configLabel(trial.labels, ' ') || 'base'} seed=${trial.seed}`)));
    run.handle(event);
  };
}

/** The table by configuration, and the best one written out as a runnable spec. */
function printOutcome(sweep: SweepSpec, outcome: SweepOutcome, outDir: string): void {
  const summaries = summarize(outcome.records, sweep.metric, sweep.goal);
  process.stdout.write(`\n${sweep.name}: ${outcome.records.length} trials in ${outDir}/results.jsonl ` +
    `(selection on ${sweep.metric}, validation only)\n\n${formatSummaryTable(summaries, sweep.metric)}\n`);
  const best = summaries.find((s) => s.n > 0);
  if (!best) return;
  const path = join(outDir, 'best.json');
  writeFileAtomically(path, `${JSON.stringify(bestSpec(sweep, best), null, 2)}\n`);
  process.stdout.write(`\nbest configuration (runnable: afa run ${path}):\n${JSON.stringify(best.labels)}\n`);
}

async function sweepCommand(file: string, opts: SweepCliOptions): Promise<number> {
  const interrupt = abortOnSigint('cancelling running trials; finished ones are kept (rerun with --resume)');
  const progress = new SweepProgress();
  try {
    const loaded = parseSweep(await loadSpecFile(file));
    const search = opts.search === undefined ? loaded.search : Fields.usage('--search').oneOf(opts.search, SEARCHES);
    const budget = opts.budget === undefined ? loaded.budget : Fields.usage('--budget').count(opts.budget, { max: 1_000_000 });
    const sweep = parseSweep({ ...loaded, search, budget });
    const earlyStop = Fields.usage('--early-stop').oneOf(opts.earlyStop, ['none', 'median', 'asha', 'hyperband'] as const);
    const warmupSteps = opts.warmupSteps === undefined ? undefined : Fields.usage('--warmup-steps').count(opts.warmupSteps, { allowZero: true });
    const minTrials = opts.minTrials === undefined ? undefined : Fields.usage('--min-trials').count(opts.minTrials, { allowZero: true, max: 100_000 });
    const storage = opts.storage === undefined ? undefined : Fields.usage('--storage').string(opts.storage, { maxLength: 4096 });
    const workers = Fields.usage('--workers').count(opts.workers, { max: 1024 });
    const maxAttempts = Fields.usage('--max-attempts').count(opts.maxAttempts, { max: 100 });
    const threads = opts.threads === undefined ? undefined : Fields.usage('--threads').count(opts.threads, { max: 1024 });
    const outDir = resolve(opts.out ?? join('afa-sweeps', sweep.name.replace(/[^A-Za-z0-9_.-]+/g, '-')));
    const slots = slotsFromFlags(opts, workers, threads);
    const board = opts.tensorboard ? await TensorBoardWriter.open(opts.tensorboard, { python: opts.python }) : undefined;
    const outcome = await runSweep(sweep, {
      outDir, slots, resume: opts.resume, forceNew: opts.forceNew, earlyStop, warmupSteps, minTrials, storage, python: opts.python,
      maxAttempts, signal: interrupt.signal,
      onEvent: (e) => progress.handle(e), onTrialEvent: board && boardHandler(board),
    }).finally(async () => {
      const warning = await board?.close();
      if (warning) progress.handle({ type: 'warning', message: `TensorBoard: ${warning}` });
    });
    progress.close();
    printOutcome(sweep, outcome, outDir);
    if (outcome.interrupted) {
      process.stderr.write('afa sweep: interrupted; rerun with --resume to finish the remaining trials\n');
      return EXIT.INTERRUPTED;
    }
    return EXIT.OK;
  } catch (error) {
    progress.close();
    return reportFailure('sweep', error, interrupt.signal.aborted);
  } finally {
    interrupt.dispose();
  }
}

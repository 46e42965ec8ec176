/**
 * Runs a sweep on a pool of workers. Finished trials are appended to `results.jsonl` as they end;
 * `resume` skips trials already there; a failed trial is retried as the retry policy says (by
 * default: when its worker was lost, on a fresh worker, up to `maxAttempts`), then recorded as
 * failed, and the sweep goes on. A trial scheduler may stop trials early. The dispatch itself (which
 * slot runs what, worker loss, drain) is `Dispatcher`'s; this module owns the directory and the records.
 */
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { hostname } from 'node:os';
import { UsageError } from '../errors.js';
import { writeFileAtomically } from '../atomic-write.js';
import { contentHash } from '../dsl/hash.js';
import { sourceKey } from '../run/cache.js';
import type { RunEvent } from '../run/events.js';
import { MedianStoppingRule } from './early-stop.js';
import { startSlots, stopSlots, type WorkerSlot } from './pool.js';
import { Dispatcher, TrialQueue, type TrialSource } from './dispatcher.js';
import { lockSweepDirectory } from './lock.js';
import { driverName, OptunaStudy, type PrunerName, type SamplerName } from './optuna.js';
import { SearchSource, StudyPruning } from './search-source.js';
import { parseSweep } from './validate.js';
import { SearchOutcome, type SearchSummary } from '../gen/afa/v1/process.js';
import { retryOnWorkerLoss, type RetryPolicy } from './retry.js';
import { FifoScheduler, type TrialScheduler } from './scheduler.js';
import { ADAPTIVE_SEARCHES, type SweepSpec } from './space.js';
import { changedPaths } from './diff.js';
import { appendRecord, latestByTrial, readRecords, repairForAppend, resultsPath, SEARCH_FILE, STUDY_FILE, SWEEP_FILE, trialRunDir, type CurvePoint, type TrialRecord } from './store.js';
import { failedRecord, runTrial } from './trial-run.js';
import { plannedAssignments, planTrials, type TrialPlan } from './trials.js';

export type SweepEvent =
  | { type: 'plan'; total: number; skipped: number; toRun: number; workers: string[] }
  | { type: 'source'; cached: boolean; path: string }
  /** The pretraining of a source that was not cached: its session, stage and step events. */
  | { type: 'pretrain'; event: RunEvent }
  | { type: 'trial-start'; trial: TrialPlan; worker: string; attempt: number }
  | { type: 'trial-eval'; trial: TrialPlan; worker: string; point: CurvePoint }
  | { type: 'trial-end'; record: TrialRecord }
  | { type: 'trial-retry'; trial: TrialPlan; worker: string; attempt: number; error: string }
  /** A configuration the search asked again after it had finished (here, or by another driver of a shared study): told from the study, not run. */
  | { type: 'repeat'; labels: Record<string, string>; number: number; repeatOf: number; seeds: number }
  | { type: 'warning'; message: string };

export interface SweepRunOptions {
  outDir: string;
  slots: WorkerSlot[];
  /** Skip trials already in the results file. Without it, a non-empty results file is an error. */
  resume?: boolean;
  /**
   * Start this sweep in a directory that holds another sweep's results, archiving them first
   * (`results.<time>.jsonl`). Without it, resuming a changed definition is an error naming what changed.
   */
  forceNew?: boolean;
  /**
   * Early stopping: 'median' (the median rule; Optuna's MedianPruner when a study holds the search),
   * 'asha' (asynchronous successive halving) or 'hyperband', through Optuna's pruners. @default 'none'
   */
  earlyStop?: PrunerName;
  /** Steps before a pruner may stop a trial (the median rule's and Optuna's warm-up). @default 0 */
  warmupSteps?: number;
  /** Finished trials the median rule waits for before it stops any. @default 3 */
  minTrials?: number;
  /**
   * Where the Optuna study lives: a journal file or a database URL (`postgresql+psycopg://...`) several
   * drivers on several machines share. @default a journal file in `outDir` (study.journal)
   */
  storage?: string;
  /** Python with the worker package, for the search process. @default as for Worker.start */
  python?: string;
  /** Decides at each validation point whether a trial goes on. @default from `earlyStop` */
  scheduler?: TrialScheduler;
  /** Attempts per trial when its worker is lost. @default 2 */
  maxAttempts?: number;
  /** Which failures are tried again. @default retryOnWorkerLoss(maxAttempts) */
  retry?: RetryPolicy;
  signal?: AbortSignal;
  onEvent?: (event: SweepEvent) => void;
  /** Every event of every trial's run (each attempt), e.g. for a TensorBoard writer. */
  onTrialEvent?: (trial: TrialPlan, event: RunEvent) => void;
}

export interface SweepOutcome {
  /** The latest record of every trial in the results file (this run's and earlier ones). */
  records: TrialRecord[];
  ran: number;
  skipped: number;
  interrupted: boolean;
}

/** sweep.json: the definition, and a planned sweep's trials (a study's are asked as it goes: the study says where it is). */
function writeSweepFile(dir: string, sweep: SweepSpec, trials: TrialPlan[] | undefined, study?: { storage: string; study: string }): void {
  const body = { sweep, sweepHash: contentHash(sweep), ...(study ? { study } : {}),
    ...(trials ? { trials: trials.map((t) => ({ trialId: t.trialId, configId: t.configId, seed: t.seed, labels: t.labels })) } : {}) };
  writeFileAtomically(join(dir, SWEEP_FILE), JSON.stringify(body, null, 2));
}

/** search.json: the study's trials in the order they finished and the parameter importance, for `afa report`. */
function writeSearchFile(dir: string, sweep: SweepSpec, summary: SearchSummary): void {
  const outcome = (o: SearchOutcome) => (o === SearchOutcome.SEARCH_OUTCOME_COMPLETE ? 'complete' : o === SearchOutcome.SEARCH_OUTCOME_PRUNED ? 'pruned' : 'failed');
  const body = { search: sweep.search, metric: sweep.metric, goal: sweep.goal, importance: summary.importance,
    trials: summary.trials.map((t) => ({ number: t.number, outcome: outcome(t.outcome), value: Number.isFinite(t.value) ? t.value : null })) };
  writeFileAtomically(join(dir, SEARCH_FILE), JSON.stringify(body, null, 2));
}

/**
 * Checks that `outDir` may take this sweep's results: an empty directory, or (with `resume`) the
 * same definition's; with `forceNew` another sweep's results are archived. Repairs a torn tail.
 */
function claimDirectory(outDir: string, sweep: SweepSpec, options: SweepRunOptions, emit: (e: SweepEvent) => void): void {
  const results = resultsPath(outDir);
  const count = latestByTrial(readRecords(results).records).length;
  const earlier = readSweepFile(outDir);
  const changes = earlier ? changedPaths(earlier, sweep) : [];
  if (count && options.forceNew && (changes.length || !options.resume)) {
    const archived = join(outDir, `results.${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl`);
    renameSync(results, archived);
    emit({ type: 'warning', message: `moved the ${count} earlier trial results to ${archived}` });
    return;
  }
  if (count && !options.resume) {
    throw new UsageError('outDir', `${outDir} already holds ${count} trial results; resume that sweep (--resume) or choose another directory`);
  }
  if (count && changes.length) {
    throw new UsageError('outDir', `${outDir} holds results of a different sweep definition (changed: ${changes.slice(0, 6).join(', ')}` +
      `${changes.length > 6 ? ', ...' : ''}); resume with the definition that made them, pass --force-new to archive them and ` +
      'start this one, or choose another directory');
  }
  const { droppedBytes, tornLines } = repairForAppend(results);
  if (droppedBytes) emit({ type: 'warning', message: `${results}: cut off a torn last line (${droppedBytes} bytes of a record cut short by a crash)` });
  if (tornLines) emit({ type: 'warning', message: `${results}: ${tornLines} unreadable line(s) skipped` });
}

function readSweepFile(dir: string): SweepSpec | undefined {
  const path = join(dir, SWEEP_FILE);
  if (!existsSync(path)) return undefined;
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { sweep: SweepSpec }).sweep;
  } catch {
    return undefined;
  }
}

function schedulerFor(options: SweepRunOptions): TrialScheduler {
  return options.scheduler ?? (options.earlyStop === 'median'
    ? new MedianStoppingRule({ minTrials: options.minTrials, warmupSteps: options.warmupSteps }) : new FifoScheduler());
}

/** Pretrains each distinct source of the queue once (on the first worker), before the workers race to do it. */
async function pretrainSources(specs: readonly TrialPlan['spec'][], slots: WorkerSlot[], signal: AbortSignal | undefined,
  emit: (e: SweepEvent) => void): Promise<void> {
  const sources = new Map<string, TrialPlan['spec']>();
  for (const spec of specs) {
    if (spec.source.kind === 'pretrain') sources.set(sourceKey(spec.backbone, spec.source, spec.precision), spec);
  }
  for (const spec of sources.values()) {
    if (signal?.aborted || spec.source.kind !== 'pretrain') break;
    const { path, cached } = await slots[0]!.worker!.prepareSource(spec.backbone, spec.source,
      { signal, device: spec.device, precision: spec.precision, onEvent: (event) => event.type !== 'source' && emit({ type: 'pretrain', event }) });
    emit({ type: 'source', cached, path });
  }
}

/** What a sweep runs from: a planned list (grid, random) or a study asked as slots free. */
interface SweepPlan {
  source: TrialSource;
  scheduler: TrialScheduler;
  /** Trials in all, done before this run, still to run. */
  total: number;
  skipped: number;
  /** The trial ids of the definition (a planned sweep's), for reading only its records back. */
  planned?: Set<string>;
  /** Specs whose sources to pretrain before the workers race to. */
  specs: TrialPlan['spec'][];
  onRecord: (record: TrialRecord) => void;
  finish: (interrupted: boolean) => Promise<void>;
}

/** Optuna holds the search when it samples (TPE, GP, CMA-ES) or prunes by rungs (ASHA, Hyperband). */
export function usesStudy(sweep: SweepSpec, earlyStop: SweepRunOptions['earlyStop']): boolean {
  return (ADAPTIVE_SEARCHES as readonly string[]).includes(sweep.search) || earlyStop === 'asha' || earlyStop === 'hyperband';
}

/** Grid and random search without Optuna: every trial planned up front, ids and files as always. */
function planned(sweep: SweepSpec, options: SweepRunOptions, existing: TrialRecord[]): SweepPlan {
  const trials = planTrials(sweep);
  const ids = new Set(trials.map((t) => t.trialId));
  const ours = existing.filter((r) => ids.has(r.trialId)); // only this definition's trials count
  writeSweepFile(options.outDir, sweep, trials);
  const done = new Set(ours.filter((r) => r.status !== 'failed').map((r) => r.trialId));
  const scheduler = schedulerFor(options);
  ours.forEach((r) => scheduler.onTrialComplete(r));
  const toRun = trials.filter((t) => !done.has(t.trialId));
  return { source: new TrialQueue(toRun), scheduler, total: trials.length, skipped: done.size, planned: ids, specs: toRun.map((t) => t.spec),
    onRecord: (r) => scheduler.onTrialComplete(r), finish: async () => undefined };
}

/**
 * The sampler's seed: the sweep's search seed; each driver of a shared study gets its own, derived
 * from it and the driver's unique name.
 */
function samplerSeed(sweep: SweepSpec, options: SweepRunOptions, driver: string): number {
  if (!options.storage) return sweep.searchSeed;
  // Seeded apart per driver (its name is unique even for two drivers of one process on one
  // directory): drivers seeded alike would propose the same configurations, and run them twice.
  return parseInt(contentHash({ seed: sweep.searchSeed, driver }).slice(0, 7), 16);
}

/** The study's name: the sweep's, and its definition's hash (a changed definition is a new study). */
const studyName = (sweep: SweepSpec) => `${sweep.name}-${contentHash(sweep).slice(0, 8)}`;

/** Adaptive search, or rung pruning: configurations asked of an Optuna study (its storage in the sweep directory by default). */
async function studied(sweep: SweepSpec, options: SweepRunOptions, existing: TrialRecord[], emit: (e: SweepEvent) => void): Promise<SweepPlan> {
  parseSweep(sweep);
  const adaptive = (ADAPTIVE_SEARCHES as readonly string[]).includes(sweep.search);
  const earlyStop = options.earlyStop ?? 'none';
  const storage = options.storage ?? join(options.outDir, STUDY_FILE);
  const maxSteps = sweep.base.schedule.reduce((n, s) => n + (s.kind === 'stage' ? s.iterations : 0), 0);
  const driver = driverName(hostname(), resolve(options.outDir));
  const study = await OptunaStudy.open(sweep, { storage, study: studyName(sweep), sampler: adaptive ? (sweep.search as SamplerName) : 'fixed',
    pruner: earlyStop, warmupSteps: options.warmupSteps, minTrials: options.minTrials, maxSteps, python: options.python,
    driver, seed: samplerSeed(sweep, options, driver) });
  writeSweepFile(options.outDir, sweep, undefined, { storage: options.storage ? 'shared' : STUDY_FILE, study: studyName(sweep) });
  const fixed = adaptive ? undefined : plannedAssignments(sweep);
  let source: SearchSource;
  const skip = (trial: TrialPlan, status: 'pruned' | 'failed', reason: string) => {
    const record = status === 'pruned' ? { ...failedRecord(trial, reason), status: 'pruned' as const } : failedRecord(trial, reason);
    appendRecord(resultsPath(options.outDir), record);
    source.recorded(record);
    emit({ type: 'trial-end', record });
  };
  source = new SearchSource(sweep, study, { budget: fixed?.length ?? sweep.budget, records: existing, fixed, skip,
    repeated: ({ labels, number, repeatOf }) => emit({ type: 'repeat', labels, number, repeatOf, seeds: sweep.seeds.length }),
    warn: (message) => emit({ type: 'warning', message }) });
  await source.init();
  const configs = fixed?.length ?? sweep.budget;
  const skipped = existing.filter((r) => r.status !== 'failed').length;
  return {
    source, scheduler: earlyStop === 'none' ? new FifoScheduler() : new StudyPruning(sweep, study, source),
    total: configs * sweep.seeds.length, skipped, specs: [sweep.base], onRecord: (r) => source.recorded(r),
    finish: async (interrupted) => {
      await source.settled();
      if (!interrupted) writeSearchFile(options.outDir, sweep, await study.summary());
      await study.close();
    },
  };
}

export async function runSweep(sweep: SweepSpec, options: SweepRunOptions): Promise<SweepOutcome> {
  const { outDir, slots, signal } = options;
  const emit = options.onEvent ?? (() => undefined);
  const results = resultsPath(outDir);
  mkdirSync(outDir, { recursive: true });
  const release = lockSweepDirectory(outDir, options.storage);
  let plan: SweepPlan | undefined;
  let finished = false;
  const finish = async (interrupted: boolean) => {
    finished = true;
    await plan?.finish(interrupted);
  };
  try {
    claimDirectory(outDir, sweep, options, emit);
    const existing = latestByTrial(readRecords(results).records);
    plan = usesStudy(sweep, options.earlyStop) ? await studied(sweep, options, existing, emit) : planned(sweep, options, existing);
    const toRun = plan.total - plan.skipped;
    emit({ type: 'plan', total: plan.total, skipped: plan.skipped, toRun, workers: slots.map((s) => s.name) });
    const mine = (rs: TrialRecord[]) => (plan!.planned ? rs.filter((r) => plan!.planned!.has(r.trialId)) : rs);
    if (toRun <= 0 && plan.source.exhausted) {
      await finish(false);
      return { records: mine(existing), ran: 0, skipped: plan.total, interrupted: false };
    }
    const ran = await dispatch(plan, options, emit);
    await finish(Boolean(signal?.aborted));
    return { records: mine(latestByTrial(readRecords(results).records)), ran, skipped: plan.skipped, interrupted: Boolean(signal?.aborted) };
  } finally {
    if (!finished) await finish(true).catch(() => undefined); // a failed sweep still closes its study
    release();
  }
}

/** The slots run the plan's trials; each finished one is appended to the results file, then the plan hears of it. */
async function dispatch(plan: SweepPlan, options: SweepRunOptions, emit: (e: SweepEvent) => void): Promise<number> {
  const { outDir, slots, signal } = options;
  const results = resultsPath(outDir);
  let ran = 0;
  try {
    await startSlots(slots);
    await pretrainSources(plan.specs, slots, signal, emit);
    const dispatcher = new Dispatcher({
      slots,
      source: plan.source,
      signal,
      retry: options.retry ?? retryOnWorkerLoss(options.maxAttempts ?? 2),
      failed: failedRecord,
      run: (slot, trial, runSignal) => runTrial({
        worker: slot.worker!, trial, scheduler: plan.scheduler, signal: runSignal, resultDir: trialRunDir(outDir, trial.trialId),
        onEval: (point) => emit({ type: 'trial-eval', trial, worker: slot.name, point }),
        onRunEvent: options.onTrialEvent && ((event) => options.onTrialEvent!(trial, event)),
      }),
      record: (_trial, entry, attempt, slot, started, retries) => {
        entry.attempts = attempt;
        if (retries.length) entry.retries = retries;
        entry.worker = slot.name;
        if (slot.node) entry.node = slot.node;
        entry.wallSeconds = (performance.now() - started) / 1000;
        appendRecord(results, entry); // the file first: the study is told after
        plan.onRecord(entry);
        ran += 1;
        emit({ type: 'trial-end', record: entry });
      },
      emit: (event) => {
        if (event.type === 'trial-start') emit({ type: 'trial-start', trial: event.trial, worker: event.slot, attempt: event.attempt });
        else if (event.type === 'trial-retry') emit({ type: 'trial-retry', trial: event.trial, worker: event.slot, attempt: event.attempt, error: event.error });
        else emit({ type: 'warning', message: `worker ${event.slot} is gone (${event.error}); ${event.live} worker(s) left` });
      },
    });
    await dispatcher.run();
  } finally {
    await stopSlots(slots);
  }
  return ran;
}

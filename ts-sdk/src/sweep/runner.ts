/**
 * Runs a sweep on a pool of workers. Finished trials are appended to `results.jsonl` as they end;
 * `resume` skips trials already there; a failed trial is retried as the retry policy says (by
 * default: when its worker was lost, on a fresh worker, up to `maxAttempts`), then recorded as
 * failed, and the sweep goes on. A trial scheduler may stop trials early. The dispatch itself (which
 * slot runs what, worker loss, drain) is `Dispatcher`'s; this module owns the directory and the records.
 */
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { writeFileAtomically } from '../atomic-write.js';
import { contentHash } from '../dsl/hash.js';
import { sourceKey } from '../run/cache.js';
import type { RunEvent } from '../run/events.js';
import { MedianStoppingRule } from './early-stop.js';
import { startSlots, stopSlots, type WorkerSlot } from './pool.js';
import { Dispatcher, TrialQueue } from './dispatcher.js';
import { retryOnWorkerLoss, type RetryPolicy } from './retry.js';
import { FifoScheduler, type TrialScheduler } from './scheduler.js';
import type { SweepSpec } from './space.js';
import { changedPaths } from './diff.js';
import { appendRecord, latestByTrial, readRecords, repairForAppend, resultsPath, SWEEP_FILE, trialRunDir, type CurvePoint, type TrialRecord } from './store.js';
import { failedRecord, runTrial } from './trial-run.js';
import { planTrials, type TrialPlan } from './trials.js';

export type SweepEvent =
  | { type: 'plan'; total: number; skipped: number; toRun: number; workers: string[] }
  | { type: 'source'; cached: boolean; path: string }
  /** The pretraining of a source that was not cached: its session, stage and step events. */
  | { type: 'pretrain'; event: RunEvent }
  | { type: 'trial-start'; trial: TrialPlan; worker: string; attempt: number }
  | { type: 'trial-eval'; trial: TrialPlan; worker: string; point: CurvePoint }
  | { type: 'trial-end'; record: TrialRecord }
  | { type: 'trial-retry'; trial: TrialPlan; worker: string; attempt: number; error: string }
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
  /** Shorthand for `scheduler`: 'median' is a {@link MedianStoppingRule}. @default 'none' */
  earlyStop?: 'none' | 'median';
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

function writeSweepFile(dir: string, sweep: SweepSpec, trials: TrialPlan[]): void {
  const body = { sweep, sweepHash: contentHash(sweep), trials: trials.map((t) => ({ trialId: t.trialId, configId: t.configId, seed: t.seed, labels: t.labels })) };
  writeFileAtomically(join(dir, SWEEP_FILE), JSON.stringify(body, null, 2));
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
  return options.scheduler ?? (options.earlyStop === 'median' ? new MedianStoppingRule() : new FifoScheduler());
}

/** Pretrains each distinct source of the queue once (on the first worker), before the workers race to do it. */
async function pretrainSources(queue: readonly TrialPlan[], slots: WorkerSlot[], signal: AbortSignal | undefined,
  emit: (e: SweepEvent) => void): Promise<void> {
  const sources = new Map<string, TrialPlan['spec']>();
  for (const { spec } of queue) {
    if (spec.source.kind === 'pretrain') sources.set(sourceKey(spec.backbone, spec.source, spec.precision), spec);
  }
  for (const spec of sources.values()) {
    if (signal?.aborted || spec.source.kind !== 'pretrain') break;
    const { path, cached } = await slots[0]!.worker!.prepareSource(spec.backbone, spec.source,
      { signal, device: spec.device, precision: spec.precision, onEvent: (event) => event.type !== 'source' && emit({ type: 'pretrain', event }) });
    emit({ type: 'source', cached, path });
  }
}

export async function runSweep(sweep: SweepSpec, options: SweepRunOptions): Promise<SweepOutcome> {
  const { outDir, slots, signal } = options;
  const emit = options.onEvent ?? (() => undefined);
  const trials = planTrials(sweep);
  const results = resultsPath(outDir);
  mkdirSync(outDir, { recursive: true });
  claimDirectory(outDir, sweep, options, emit);
  const planned = new Set(trials.map((t) => t.trialId));
  // Only this definition's trials count, whatever else the file holds.
  const existing = latestByTrial(readRecords(results).records).filter((r) => planned.has(r.trialId));
  writeSweepFile(outDir, sweep, trials);
  const done = new Set(existing.filter((r) => r.status !== 'failed').map((r) => r.trialId));
  const scheduler = schedulerFor(options);
  existing.forEach((r) => scheduler.onTrialComplete(r));
  const queue = new TrialQueue(trials.filter((t) => !done.has(t.trialId)));
  const toRun = trials.length - done.size;
  emit({ type: 'plan', total: trials.length, skipped: done.size, toRun, workers: slots.map((s) => s.name) });
  if (toRun === 0) return { records: existing, ran: 0, skipped: trials.length, interrupted: false };

  let ran = 0;
  try {
    await startSlots(slots);
    await pretrainSources(trials.filter((t) => !done.has(t.trialId)), slots, signal, emit);
    const dispatcher = new Dispatcher({
      slots,
      source: queue,
      signal,
      retry: options.retry ?? retryOnWorkerLoss(options.maxAttempts ?? 2),
      failed: failedRecord,
      run: (slot, trial, runSignal) => runTrial({
        worker: slot.worker!, trial, scheduler, signal: runSignal, resultDir: trialRunDir(outDir, trial.trialId),
        onEval: (point) => emit({ type: 'trial-eval', trial, worker: slot.name, point }),
        onRunEvent: options.onTrialEvent && ((event) => options.onTrialEvent!(trial, event)),
      }),
      record: (_trial, entry, attempt, slot, started, retries) => {
        entry.attempts = attempt;
        if (retries.length) entry.retries = retries;
        entry.worker = slot.name;
        if (slot.node) entry.node = slot.node;
        entry.wallSeconds = (performance.now() - started) / 1000;
        appendRecord(results, entry);
        scheduler.onTrialComplete(entry);
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
  const records = latestByTrial(readRecords(results).records).filter((r) => planned.has(r.trialId));
  return { records, ran, skipped: done.size, interrupted: Boolean(signal?.aborted) };
}

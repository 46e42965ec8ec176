/**
 * Runs a sweep on a pool of workers. Finished trials are appended to `results.jsonl` as they end;
 * `resume` skips trials already there; a crashed worker is restarted and its trial retried up to
 * `maxAttempts`, then recorded as failed; the sweep goes on after a failed trial.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CancelledError, WorkerCrashedError, WorkerUnavailableError } from '../errors.js';
import { contentHash } from '../dsl/hash.js';
import { InvalidSpecError } from '../dsl/validate.js';
import { MedianStopper } from './early-stop.js';
import { startSlots, stopSlots, type WorkerSlot } from './pool.js';
import type { SweepSpec } from './space.js';
import { appendRecord, latestByTrial, readRecords, resultsPath, SWEEP_FILE, type CurvePoint, type TrialRecord } from './store.js';
import { planTrials, type TrialPlan } from './trials.js';

export type SweepEvent =
  | { type: 'plan'; total: number; skipped: number; toRun: number; workers: string[] }
  | { type: 'source'; cached: boolean; path: string }
  | { type: 'trial-start'; trial: TrialPlan; worker: string; attempt: number }
  | { type: 'trial-eval'; trial: TrialPlan; worker: string; point: CurvePoint }
  | { type: 'trial-end'; record: TrialRecord }
  | { type: 'trial-retry'; trial: TrialPlan; worker: string; attempt: number; error: string };

export interface SweepRunOptions {
  outDir: string;
  slots: WorkerSlot[];
  /** Skip trials already in the results file. Without it, a non-empty results file is an error. */
  resume?: boolean;
  earlyStop?: 'none' | 'median';
  /** Attempts per trial when its worker crashes. @default 2 */
  maxAttempts?: number;
  signal?: AbortSignal;
  onEvent?: (event: SweepEvent) => void;
}

export interface SweepOutcome {
  /** The latest record of every trial in the results file (this run's and earlier ones). */
  records: TrialRecord[];
  ran: number;
  skipped: number;
  interrupted: boolean;
}

function writeSweepFile(dir: string, sweep: SweepSpec, trials: TrialPlan[]): void {
  const path = join(dir, SWEEP_FILE);
  const tmp = `${path}.${process.pid}.tmp`;
  const body = { sweep, sweepHash: contentHash(sweep), trials: trials.map((t) => ({ trialId: t.trialId, configId: t.configId, seed: t.seed, labels: t.labels })) };
  writeFileSync(tmp, JSON.stringify(body, null, 2));
  renameSync(tmp, path);
}

const isCrash = (error: unknown) => error instanceof WorkerCrashedError || error instanceof WorkerUnavailableError;

export async function runSweep(sweep: SweepSpec, options: SweepRunOptions): Promise<SweepOutcome> {
  const { outDir, slots, signal } = options;
  const emit = options.onEvent ?? (() => undefined);
  const maxAttempts = options.maxAttempts ?? 2;
  const trials = planTrials(sweep);
  const results = resultsPath(outDir);
  mkdirSync(outDir, { recursive: true });
  const existing = latestByTrial(readRecords(results).records);
  if (existing.length && !options.resume) {
    throw new InvalidSpecError('--out', `${outDir} already holds ${existing.length} trial results; pass --resume to continue that sweep or choose another directory`);
  }
  writeSweepFile(outDir, sweep, trials);
  const done = new Set(existing.filter((r) => r.status !== 'failed').map((r) => r.trialId));
  const stopper = options.earlyStop === 'median' ? new MedianStopper() : undefined;
  existing.forEach((r) => stopper?.record(r));
  const queue = trials.filter((t) => !done.has(t.trialId));
  emit({ type: 'plan', total: trials.length, skipped: trials.length - queue.length, toRun: queue.length, workers: slots.map((s) => s.name) });

  let ran = 0;
  if (queue.length === 0) return { records: existing, ran, skipped: trials.length, interrupted: false };

  await startSlots(slots);
  try {
    // Pretrain each distinct source once, before the workers race to do it in parallel.
    const sources = new Map(queue.filter((t) => t.spec.source.kind === 'pretrain')
      .map((t) => [contentHash({ b: { ...t.spec.backbone, layers: undefined }, s: t.spec.source }), t.spec] as const));
    for (const spec of sources.values()) {
      if (signal?.aborted || spec.source.kind !== 'pretrain') break;
      const { path, cached } = await slots[0]!.worker!.prepareSource(spec.backbone, spec.source, { signal, device: spec.device });
      emit({ type: 'source', cached, path });
    }

    const attempts = new Map<string, number>();
    const work = async (slot: WorkerSlot) => {
      while (queue.length && !signal?.aborted) {
        const trial = queue.shift()!;
        const attempt = (attempts.get(trial.trialId) ?? 0) + 1;
        attempts.set(trial.trialId, attempt);
        emit({ type: 'trial-start', trial, worker: slot.name, attempt });
        const started = performance.now();
        let record: TrialRecord | undefined;
        try {
          record = await runTrial(slot, trial, stopper, signal, emit);
        } catch (error) {
          if (signal?.aborted) return; // interrupted: an unfinished trial is not recorded
          const message = error instanceof Error ? error.message : String(error);
          if (isCrash(error)) {
            await slot.worker?.stop().catch(() => undefined);
            slot.worker = await slot.create();
            if (attempt < maxAttempts) {
              emit({ type: 'trial-retry', trial, worker: slot.name, attempt, error: message });
              queue.unshift(trial);
              continue;
            }
          }
          record = failedRecord(trial, message);
        }
        record.attempts = attempt;
        record.worker = slot.name;
        record.wallSeconds = (performance.now() - started) / 1000;
        appendRecord(results, record);
        stopper?.record(record);
        ran += 1;
        emit({ type: 'trial-end', record });
      }
    };
    await Promise.all(slots.map(work));
  } finally {
    await stopSlots(slots);
  }
  return { records: latestByTrial(readRecords(results).records), ran, skipped: trials.length - ran - queue.length, interrupted: Boolean(signal?.aborted) };
}

function baseRecord(trial: TrialPlan): Omit<TrialRecord, 'status' | 'metrics' | 'curve'> {
  return {
    trialId: trial.trialId,
    configId: trial.configId,
    values: trial.values,
    labels: trial.labels,
    seed: trial.seed,
    specHash: trial.trialId,
    spec: trial.spec,
    attempts: 1,
    worker: '',
    wallSeconds: 0,
    finishedAt: new Date().toISOString(),
  };
}

function failedRecord(trial: TrialPlan, error: string): TrialRecord {
  return { ...baseRecord(trial), status: 'failed', error, curve: [],
    metrics: { bestValAccuracy: 0, finalValAccuracy: 0, finalValLoss: 0, testAccuracy: null } };
}

async function runTrial(slot: WorkerSlot, trial: TrialPlan, stopper: MedianStopper | undefined, signal: AbortSignal | undefined,
  emit: (e: SweepEvent) => void): Promise<TrialRecord> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const curve: CurvePoint[] = [];
  const stageIndex = new Map<string, number>();
  let offset = 0;
  let currentIterations = 0;
  let pruned: string | undefined;
  try {
    const run = slot.worker!.run(trial.spec, { signal: controller.signal, checkpoint: false });
    try {
      for await (const event of run.events) {
        if (event.phase !== 'transfer') continue;
        if (event.type === 'stage-start') {
          offset += currentIterations;
          currentIterations = event.iterations;
          stageIndex.set(event.stage, stageIndex.size);
        } else if (event.type === 'eval') {
          const point: CurvePoint = { stage: stageIndex.get(event.stage) ?? 0, step: event.step, globalStep: offset + event.step,
            accuracy: event.accuracy, loss: event.loss };
          curve.push(point);
          emit({ type: 'trial-eval', trial, worker: slot.name, point });
          const verdict = stopper?.shouldStop(point);
          if (verdict?.stop && !pruned) {
            pruned = `val ${point.accuracy.toFixed(3)} below the median ${verdict.median!.toFixed(3)} at stage ${point.stage} step ${point.step}`;
            controller.abort(new Error('early stop'));
          }
        }
      }
      const result = await run.result;
      const last = result.stages.at(-1)!;
      const attention = result.stages.flatMap((stage, i) =>
        stage.attention.map((a) => ({ stage: i, layer: a.layer, entropy: a.entropy, maxEntropy: a.maxEntropy })));
      return { ...baseRecord(trial), status: 'completed', curve, attention,
        metrics: { bestValAccuracy: result.bestValAccuracy, finalValAccuracy: last.finalValAccuracy, finalValLoss: last.finalValLoss,
          testAccuracy: result.testAccuracy ?? null } };
    } catch (error) {
      if (pruned && error instanceof CancelledError && !signal?.aborted) {
        const best = Math.max(0, ...curve.map((p) => p.accuracy));
        const last = curve.at(-1);
        return { ...baseRecord(trial), status: 'pruned', curve, error: pruned,
          metrics: { bestValAccuracy: best, finalValAccuracy: last?.accuracy ?? 0, finalValLoss: last?.loss ?? 0, testAccuracy: null } };
      }
      throw error;
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}


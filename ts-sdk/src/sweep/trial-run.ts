/** One trial on one worker slot: its experiment run, its learning curve, and its record. */
import { CancelledError } from '../errors.js';
import type { TrialScheduler } from './scheduler.js';
import type { Worker } from '../worker/worker.js';
import type { CurvePoint, TrialRecord } from './store.js';
import type { TrialPlan } from './trials.js';
import type { RunEvent } from '../run/events.js';

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

export function failedRecord(trial: TrialPlan, error: string): TrialRecord {
  return { ...baseRecord(trial), status: 'failed', error, curve: [],
    metrics: { bestValAccuracy: 0, finalValAccuracy: 0, finalValLoss: 0, testAccuracy: null } };
}

function prunedRecord(trial: TrialPlan, curve: CurvePoint[], reason: string): TrialRecord {
  const last = curve.at(-1);
  return { ...baseRecord(trial), status: 'pruned', curve, error: reason,
    metrics: { bestValAccuracy: Math.max(0, ...curve.map((p) => p.accuracy)), finalValAccuracy: last?.accuracy ?? 0,
      finalValLoss: last?.loss ?? 0, testAccuracy: null } };
}

export interface TrialRunOptions {
  /** The worker the trial runs on (its slot's). */
  worker: Worker;
  trial: TrialPlan;
  /** Decides at each validation point whether the trial goes on. */
  scheduler: TrialScheduler;
  signal?: AbortSignal;
  /** Each validation point of the learning curve, as it comes. */
  onEval?: (point: CurvePoint) => void;
  /** Every event of the trial's run (e.g. for a TensorBoard writer). */
  onRunEvent?: (event: RunEvent) => void;
  /** Where the run's `result.json` goes; none without it. */
  resultDir?: string;
}

/** Runs the trial; a scheduler's stop ends it as 'pruned'. Throws what the run throws otherwise. */
export async function runTrial(options: TrialRunOptions): Promise<TrialRecord> {
  const { worker, trial, scheduler, signal, onEval, onRunEvent, resultDir } = options;
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const curve: CurvePoint[] = [];
  const stageIndex = new Map<string, number>();
  let offset = 0;
  let currentIterations = 0;
  let pruned: string | undefined;
  try {
    const run = worker.run(trial.spec, { signal: controller.signal, checkpoint: false, resultDir: resultDir ?? false });
    for await (const event of run.events) {
      onRunEvent?.(event);
      if (event.phase !== 'transfer') continue;
      if (event.type === 'stage-start') {
        offset += currentIterations;
        currentIterations = event.iterations;
        stageIndex.set(event.stage, stageIndex.size);
      } else if (event.type === 'eval') {
        const point: CurvePoint = { stage: stageIndex.get(event.stage) ?? 0, step: event.step, globalStep: offset + event.step,
          accuracy: event.accuracy, loss: event.loss };
        curve.push(point);
        onEval?.(point);
        const decision = await scheduler.onTrialResult(trial, point);
        if (decision.action === 'stop' && !pruned) {
          pruned = decision.reason;
          controller.abort(new Error('early stop'));
        }
      }
    }
    const result = await run.result;
    const last = result.stages.at(-1)!;
    const attention = result.stages.flatMap((stage, i) =>
      stage.attention.map((a) => ({ stage: i, layer: a.layer, entropy: a.entropy, maxEntropy: a.maxEntropy })));
    return { ...baseRecord(trial), status: 'completed', curve, attention, ...(result.dataSha256 ? { dataSha256: result.dataSha256 } : {}),
      metrics: { bestValAccuracy: result.bestValAccuracy, finalValAccuracy: last.finalValAccuracy, finalValLoss: last.finalValLoss,
        testAccuracy: result.testAccuracy ?? null } };
  } catch (error) {
    if (pruned && error instanceof CancelledError && !signal?.aborted) return prunedRecord(trial, curve, pruned);
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * `afa-transfer/sweep`: the sweep engine behind `afa sweep` (the definition builders are in the
 * root): planning, running on local, remote or Ray workers, trial schedulers, the results file
 * and its summaries.
 *
 * @example
 * ```ts
 * import { sweep, grid } from 'afa-transfer';
 * import { runSweep, planSlots, summarize, formatSummaryTable } from 'afa-transfer/sweep';
 *
 * const outcome = await runSweep(sweep({ name: 'lr', base: spec, space: { 'schedule[0].optimizer.lr': grid([0.01, 0.05]) } }),
 *   { outDir: 'afa-sweeps/lr', slots: planSlots({ local: 2 }) });
 * console.log(formatSummaryTable(summarize(outcome.records, 'bestValAccuracy', 'max'), 'bestValAccuracy'));
 * ```
 */
export { runSweep } from './runner.js';
export type { SweepEvent, SweepRunOptions, SweepOutcome } from './runner.js';
export { planTrials } from './trials.js';
export type { TrialPlan } from './trials.js';
export { parseSweep, SWEEP_LIMITS } from './validate.js';
export { planSlots } from './pool.js';
export type { PoolOptions, WorkerSlot } from './pool.js';
export { Dispatcher, TrialQueue } from './dispatcher.js';
export type { DispatchSlot, SlotWorker, SlotState, TrialSource, DispatchEvent, DispatcherOptions } from './dispatcher.js';
export type { TrialScheduler, TrialDecision } from './scheduler.js';
export { FifoScheduler } from './scheduler.js';
export { MedianStoppingRule } from './early-stop.js';
export type { RetryPolicy } from './retry.js';
export { retryOnWorkerLoss, isWorkerLoss } from './retry.js';
export type { TrialRecord, TrialStatus, CurvePoint, TrialAttention } from './store.js';
export { readRecords, latestByTrial } from './store.js';
export { summarize, bestPerGroup, formatSummaryTable, bestSpec, recordsToCsv, meanStd } from './summary.js';
export type { ConfigSummary } from './summary.js';
export { loadSweepDirectory } from './directory.js';
export type { SweepDirectory } from './directory.js';
export { RayPool } from '../worker/ray-pool.js';
export type { RayPoolOptions, RayEndpoint, RayPoolEvent } from '../worker/ray-pool.js';

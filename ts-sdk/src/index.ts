/**
 * AFA transfer SDK: drive a bundled PyTorch worker over gRPC for deep transfer learning by
 * Attentive Feature Alignment and its baselines.
 *
 * @example
 * ```ts
 * import { Worker, experiment, backbone, data, pretrain, afa } from 'afa-transfer';
 *
 * const spec = experiment({
 *   name: 'fashion-to-mnist-10',
 *   backbone: backbone.smallResNet({ width: 32 }),
 *   source: pretrain({ data: data.fashionMnist(), iterations: 1500 }),
 *   target: data.mnist({ labelsPerClass: 10, valPerClass: 10 }),
 *   schedule: afa({ spatial: { alpha: 0.001, iterations: 150 }, channel: { alpha: 0.01, iterations: 150 } }),
 * });
 * await using worker = await Worker.start();
 * const run = worker.run(spec, { signal: AbortSignal.timeout(600_000) });
 * for await (const event of run.events) if (event.type === 'eval') console.log(event.stage, event.accuracy);
 * console.log((await run.result).testAccuracy);
 * ```
 */
export { Worker } from './worker/worker.js';
export type { WorkerState, WorkerStartOptions, WorkerStartOptionsWithDefaults, WorkerConnectOptions } from './worker/worker.js';
export { setupWorkerEnvironment } from './worker/setup.js';
export type { WorkerSetupOptions } from './worker/setup.js';
export { WorkerClient, ServingStatus, AFA_SERVICE } from './client/client.js';
export type { ClientOptions } from './client/client.js';
export type { CallOptions } from './client/calls.js';
export { PROTOCOL_VERSION } from './worker/process.js';
export {
  AfaError,
  IllegalStateError,
  WorkerStartError,
  WorkerCrashedError,
  WorkerCallError,
  FieldError,
  InvalidSpecError,
  UsageError,
  SpecError,
  NotFoundError,
  SessionBusyError,
  UnauthenticatedError,
  DeadlineExceededError,
  WorkerUnavailableError,
  ResourceExhaustedError,
  CancelledError,
  StageFailedError,
  formatFieldProblem,
} from './errors.js';
export type { FieldProblem } from './errors.js';
export * as proto from './gen/afa/v1/afa.js';
/** The DSL's plain data as the contract's messages, for driving a worker with a gRPC client of your own. */
export { toCreateSessionRequest, toStageMessage } from './run/convert.js';
export type { SessionOptions } from './run/convert.js';

export { backbone, BACKBONE_NAMES } from './dsl/backbone.js';
export type { BackboneSpec, BackboneName, BackboneOptions, SmallResNetOptions } from './dsl/backbone.js';
export { data, DATA_KINDS } from './dsl/data.js';
export type { DataSpec, FashionMnistData, MnistData, ImageFolderData, SamplingOptions, ColorMode } from './dsl/data.js';
export {
  noRegularizer,
  l2fe,
  l2sp,
  featureMap,
  delta,
  afaSpatial,
  afaChannel,
  relative,
  needsSource,
  REGULARIZER_KINDS,
  DEFAULT_WEIGHT_DECAY,
} from './dsl/regularizers.js';
export type { RegularizerSpec, RegularizerKind, Alpha, RelativeAlpha } from './dsl/regularizers.js';
export { stage, promoteTargetToSource, sgd, adam, lr, PAPER_BETA } from './dsl/stage.js';
export type { StageSpec, StageOptions, PromoteStep, ScheduleStep, OptimizerSpec, LrScheduleSpec } from './dsl/stage.js';
export { afa, baseline, DEFAULT_ALPHA, headWarmup, PAPER_ALPHAS, withHeadWarmup } from './dsl/schedules.js';
export type { AfaOptions, AfaChannelStageOptions, AfaStageOptions, BaselineOptions, HeadWarmupOptions } from './dsl/schedules.js';
export { pretrain, weights, fromScratch } from './dsl/source.js';
export type { SourceSpec, PretrainSource, WeightsSource, ScratchSource, PretrainOptions } from './dsl/source.js';
export { experiment, specHash, SPEC_VERSION } from './dsl/experiment.js';
export type { ExperimentInput, ExperimentSpec } from './dsl/experiment.js';
export { PRECISIONS, type Precision } from './dsl/precision.js';
export { LIMITS } from './dsl/limits.js';
export { parseExperiment } from './dsl/validate.js';
export { contentHash, stableStringify } from './dsl/hash.js';
export { Session } from './run/session.js';
export type { StageRun, StageRunOptions, SplitName } from './run/session.js';
export type { ExperimentRun, RunOptions } from './run/runner.js';
export type { RunEvent, ExperimentResult, StageResult, StepPoint, EvalPoint, AttentionStat, Phase, Stability } from './run/events.js';
export { bytesReplacer, bytesReviver, DEFAULT_ATTENTION_IMAGES } from './run/attention.js';
export type { AttentionSnapshot, AttentionImage, LayerAttentionSnapshot, AttentionKind } from './run/attention.js';
export { readRunRecord, writeRunRecord, isRunDirectory, RUN_RESULT_FILE } from './run/result-file.js';
export type { RunRecord } from './run/result-file.js';
export { renderRunReport } from './report/run-report.js';
export { TensorBoardWriter, TensorBoardRun } from './report/tensorboard.js';
export type { TensorBoardOptions } from './report/tensorboard.js';
export { Progress } from './report/progress.js';
export type { ProgressOptions } from './report/progress.js';
export { formatTable } from './text/table.js';
export { formatResult, formatComparison } from './report/result.js';
export { sweep, grid, choice, variants, uniform, logUniform, intUniform, SWEEP_METRICS } from './sweep/space.js';
export type { SweepSpec, SweepInput, Dimension, SweepMetric } from './sweep/space.js';
export { runSweep } from './sweep/runner.js';
export type { TrialScheduler, TrialDecision } from './sweep/scheduler.js';
export { FifoScheduler } from './sweep/scheduler.js';
export { MedianStoppingRule } from './sweep/early-stop.js';
export type { RetryPolicy } from './sweep/retry.js';
export { retryOnWorkerLoss } from './sweep/retry.js';
export type { SweepEvent, SweepRunOptions, SweepOutcome } from './sweep/runner.js';
export { planTrials } from './sweep/trials.js';
export type { TrialPlan } from './sweep/trials.js';
export type { TrialRecord, TrialStatus, CurvePoint, TrialAttention } from './sweep/store.js';
export { readRecords, latestByTrial } from './sweep/store.js';
export { planSlots } from './sweep/pool.js';
export type { PoolOptions, WorkerSlot } from './sweep/pool.js';
export { RayPool } from './worker/ray-pool.js';
export type { RayPoolOptions, RayEndpoint, RayPoolEvent } from './worker/ray-pool.js';
export { summarize, bestPerGroup, formatSummaryTable, bestSpec, recordsToCsv, meanStd } from './sweep/summary.js';
export type { ConfigSummary } from './sweep/summary.js';
export { parseSweep } from './sweep/validate.js';
export { loadSweepDirectory } from './sweep/load.js';
export { renderReport, writeReport } from './report/html.js';
export { SweepProgress } from './report/sweep-progress.js';

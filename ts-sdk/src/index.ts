/**
 * AFA transfer SDK: drive a bundled PyTorch worker over gRPC for deep transfer learning by
 * Attentive Feature Alignment and its baselines. The root holds what an experiment script and a
 * pipeline use: the DSL, the worker, sessions, results and typed errors. The sweep engine is
 * `afa-transfer/sweep`, reports and progress `afa-transfer/report`, the contract's messages and a
 * raw client `afa-transfer/proto`.
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
 *   schedule: afa({ spatial: { iterations: 150 }, channel: { iterations: 150 } }),
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
export type { WorkerSetupOptions, WorkerSetupResult } from './worker/setup.js';
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
  UnimplementedError,
  CancelledError,
  StageFailedError,
} from './errors.js';
export type { FieldProblem } from './errors.js';

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
// A sweep definition is part of the DSL (a sweep file imports it from here); the engine is afa-transfer/sweep.
export { sweep, grid, choice, variants, uniform, logUniform, intUniform, SWEEP_METRICS, SEARCHES } from './sweep/space.js';
export type { SweepSpec, SweepInput, Dimension, SweepMetric, Search } from './sweep/space.js';

export { Session, ModelSession } from './run/session.js';
export type { StageHandle, StageRunOptions, SplitName, CheckpointCard, SavedCheckpoint } from './run/session.js';
// The model out: predictions on a worker, an ONNX export, inference in Node without Python.
export { exportOnnx } from './worker/export.js';
export type { ExportOptions } from './worker/export.js';
export type { OnnxExport, ExportOnnxOptions, PredictCallOptions } from './run/model-out.js';
export { loadModel, Model } from './model/model.js';
export type { LoadModelOptions, PredictOptions } from './model/model.js';
export type { ImageInput, RawImage } from './model/images.js';
export type { Prediction, TopClass } from './model/predictions.js';
export type { ModelCard, ImageTransform } from './gen/afa/v1/afa.js';
export type { ExperimentRun, RunOptions } from './run/runner.js';
export type { RunEvent, ExperimentResult, StageResult, StepPoint, EvalPoint, AttentionStat, Phase, Stability, Drift } from './run/events.js';
export { DEFAULT_ATTENTION_IMAGES } from './run/attention.js';
export type { AttentionSnapshot, AttentionImage, LayerAttentionSnapshot, AttentionKind } from './run/attention.js';
export { readRunRecord, isRunDirectory, RUN_RESULT_FILE } from './run/result-file.js';
export type { RunRecord } from './run/result-file.js';

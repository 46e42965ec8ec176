/** Typed events and results of stages and experiments. */
import { StageStatus, type Drift as DriftMessage, type EvalMetrics, type LayerAttention, type PhaseTiming, type Progress as ProgressMessage,
  type StabilityEstimate, type StageEvent, type StageSummary, type StepMetrics } from '../gen/afa/v1/afa.js';

import { fromSnapshotMessage, type AttentionSnapshot } from './attention.js';

export type Phase = 'pretrain' | 'transfer';

/**
 * One StepMetrics message of the contract: step, ceLoss, regLoss, totalLoss, lr, trainAccuracy,
 * imagesPerSecond, and for stages with attention its entropy per layer (`attention`).
 */
export type StepPoint = StepMetrics;
/** One EvalMetrics message of the contract: step, split, loss, accuracy, isBest. */
export type EvalPoint = EvalMetrics;

export type StageStatusName = 'completed' | 'cancelled' | 'diverged' | 'unknown';

/**
 * Where the stage's alpha sits against the step-size stability limit: lambdaMax (top eigenvalue of
 * Omega's Hessian in the backbone weights), alphaMax = 2 (1 + momentum) / (lr x lambdaMax) (NaN for
 * Adam), the alpha used and alphaRatio = alpha / alphaMax; the estimate's products and seconds.
 */
export type Stability = StabilityEstimate;

/**
 * How far the target moved from the run's original source at the end of a stage (stages with
 * `measureDrift`): weightDistance ||w - w_source|| over the backbone and weightDistanceRelative
 * (over ||w_source||); per aligned layer the mean squared feature discrepancy and its ratio to the
 * source's mean squared activation, on `images` validation images.
 */
export type Drift = DriftMessage;

/**
 * A phase before training, as it goes: `activity` is the worker's name for it (`source_load`,
 * `data_decode`, `bn_recalibration`, `delta_probe`, `stability_estimate`, `feature_cache`); done of
 * total (0 = unknown) `unit`s at `rate` per second, `seconds` since it began; `finished` at its end.
 */
export type ProgressPoint = Omit<ProgressMessage, 'phase'> & { activity: string };

/** How long a phase before training took (`StageResult.phases`, the session event's `phases`). */
export type PhaseTime = PhaseTiming;

/** Attention entropy of one aligned layer over the last batch (nats), and the uniform maximum. */
export type AttentionStat = LayerAttention;

export interface StageResult {
  name: string;
  regularizer: string;
  status: StageStatusName;
  iterations: number;
  stepsCompleted: number;
  bestValAccuracy: number;
  bestStep: number;
  finalValAccuracy: number;
  finalValLoss: number;
  finalTrainLoss: number;
  wallSeconds: number;
  /** Of `wallSeconds`, the time the worker's loop stood paused because this reader fell behind the
   * worker's event buffer (a slow reader throttles training by this much). */
  deliveryWaitSeconds: number;
  imagesPerSecond: number;
  message: string;
  attention: AttentionStat[];
  /** Bytes of source feature maps the worker cached for this stage (0 when it ran the source forward). */
  featureCacheBytes: number;
  /** The stability estimate of a stage with a regulariser term (absent for none and L2-FE). */
  stability?: Stability;
  /** Where the attention looks at the end of a stage with attention (see `RunOptions.attentionImages`). */
  attentionSnapshot?: AttentionSnapshot;
  /** The target's drift from the original source (stages with `measureDrift`). */
  drift?: Drift;
  /** The phases before the first step (recalibration, DELTA's probe, the stability estimate, the feature cache) and their durations. */
  phases: PhaseTime[];
  history: { steps: StepPoint[]; evals: EvalPoint[] };
}

interface EventBase {
  phase: Phase;
  stage: string;
}

export type RunEvent =
  | { type: 'source'; phase: 'pretrain'; cached: boolean; path: string }
  | {
    type: 'session'; phase: Phase; sessionId: string; trainSize: number; valSize: number; testSize: number;
    layers: { name: string; shape: number[] }[];
    /** Where and in what arithmetic the worker runs it, e.g. "cpu" and "fp32, source bf16". */
    device: string; precision: string;
    /** sha256 of the source weights the worker loaded (transfer sessions with a source). */
    sourceSha256?: string;
    /** sha256 of the data set (its deterministic pack): the same images, the same hash, on every worker. */
    dataSha256?: string;
    /** The phases of the session's creation (source load, data decode) and their durations. */
    phases: PhaseTime[];
    /** Images skipped because they did not decode (`skipBadFiles`). */
    badFilesSkipped: number;
    /** The backbone as built and the model's input (channels, height, width). */
    backbone: string; inputShape: number[];
    /** The memory layout its models run in ("channels_last" or "contiguous") and why. */
    memoryFormat: string; layoutReason: string;
  }
  | ({ type: 'progress'; phase: Phase; stage?: string } & ProgressPoint)
  | (EventBase & { type: 'stage-start'; index: number; iterations: number; regularizer: string; stability?: Stability })
  | (EventBase & { type: 'step'; iterations: number } & StepPoint)
  | (EventBase & { type: 'eval'; iterations: number } & EvalPoint)
  | (EventBase & { type: 'stage-end'; result: StageResult })
  | { type: 'promote'; phase: 'transfer'; tensorsCopied: number }
  | { type: 'test'; phase: 'transfer'; loss: number; accuracy: number; count: number }
  | { type: 'checkpoint'; phase: Phase; path: string; bytes: number };

export interface ExperimentResult {
  name: string;
  specHash: string;
  seed: number;
  /** The target data's class names, in label order (older run records lack them). */
  classNames?: string[];
  stages: StageResult[];
  /** Best validation accuracy of the last stage (the selected model's). */
  bestValAccuracy: number;
  /** Test accuracy of the selected model, evaluated once (undefined when `evaluateTest` is false). */
  testAccuracy: number | undefined;
  testLoss: number | undefined;
  checkpointPath: string | undefined;
  sourcePath: string | undefined;
  /** sha256 of the source weights the worker loaded: the same bytes on every worker. */
  sourceSha256?: string;
  /** sha256 of the target data set's pack (undefined for a built-in set). */
  dataSha256?: string;
  timings: { totalSeconds: number; pretrainSeconds: number; transferSeconds: number; sourceCached: boolean };
}

const STATUS: Record<number, StageStatusName> = {
  [StageStatus.STAGE_STATUS_COMPLETED]: 'completed',
  [StageStatus.STAGE_STATUS_CANCELLED]: 'cancelled',
  [StageStatus.STAGE_STATUS_DIVERGED]: 'diverged',
};

/** Folds one stage's event stream into events for the caller and the stage's result. */
export class StageAccumulator {
  readonly steps: StepPoint[] = [];
  readonly evals: EvalPoint[] = [];
  regularizer = '';
  iterations = 0;

  constructor(
    readonly phase: Phase,
    readonly stage: string,
    readonly index: number,
  ) {}

  toRunEvent(event: StageEvent): RunEvent | undefined {
    const e = event.event;
    if (!e) return undefined;
    const base = { phase: this.phase, stage: this.stage };
    switch (e.$case) {
      case 'started':
        this.regularizer = e.value.regularizer;
        this.iterations = e.value.iterations;
        return { ...base, type: 'stage-start', index: this.index, iterations: e.value.iterations, regularizer: e.value.regularizer,
          ...(e.value.stability ? { stability: { ...e.value.stability } } : {}) };
      case 'step': {
        const point: StepPoint = { ...e.value, attention: e.value.attention.map((a) => ({ ...a })) };
        this.steps.push(point);
        return { ...base, type: 'step', iterations: this.iterations, ...point };
      }
      case 'eval': {
        const point: EvalPoint = { ...e.value };
        this.evals.push(point);
        return { ...base, type: 'eval', iterations: this.iterations, ...point };
      }
      case 'summary':
        return { ...base, type: 'stage-end', result: this.result(e.value) };
      case 'progress': {
        const { phase: activity, ...rest } = e.value;
        return { ...base, type: 'progress', activity, ...rest };
      }
    }
  }

  result(s: StageSummary): StageResult {
    return {
      name: s.name || this.stage,
      regularizer: this.regularizer,
      status: STATUS[s.status] ?? 'unknown',
      iterations: this.iterations,
      stepsCompleted: s.stepsCompleted,
      bestValAccuracy: s.bestValAccuracy,
      bestStep: s.bestStep,
      finalValAccuracy: s.finalValAccuracy,
      finalValLoss: s.finalValLoss,
      finalTrainLoss: s.finalTrainLoss,
      wallSeconds: s.wallSeconds,
      deliveryWaitSeconds: s.deliveryWaitSeconds,
      imagesPerSecond: s.imagesPerSecond,
      message: s.message,
      attention: s.attention.map((a) => ({ ...a })),
      featureCacheBytes: s.featureCacheBytes,
      ...(s.stability ? { stability: { ...s.stability } } : {}),
      ...(s.drift ? { drift: { ...s.drift, layers: s.drift.layers.map((l) => ({ ...l })) } } : {}),
      phases: s.phases.map((p) => ({ ...p })),
      ...(s.attentionSnapshot?.images.length ? { attentionSnapshot: fromSnapshotMessage(s.attentionSnapshot) } : {}),
      history: { steps: this.steps, evals: this.evals },
    };
  }
}

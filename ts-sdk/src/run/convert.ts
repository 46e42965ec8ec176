/** The DSL's plain data -> the contract's messages. The only place that knows both shapes. */
import {
  ColorMode,
  OptimizerKind,
  Precision as PrecisionMessage,
  type BackboneSpec as BackboneMessage,
  type CreateSessionRequest,
  type DataSpec as DataMessage,
  type LrSchedule,
  type OptimizerSpec as OptimizerMessage,
  type Regularizer,
  type StageSpec as StageMessage,
} from '../gen/afa/v1/afa.js';
import type { BackboneSpec } from '../dsl/backbone.js';
import type { DataSpec } from '../dsl/data.js';
import type { Precision } from '../dsl/precision.js';
import type { Alpha, RegularizerSpec } from '../dsl/regularizers.js';
import type { LrScheduleSpec, OptimizerSpec, StageSpec } from '../dsl/stage.js';

const COLORS = { native: ColorMode.COLOR_MODE_NATIVE, grayscale: ColorMode.COLOR_MODE_GRAYSCALE, rgb: ColorMode.COLOR_MODE_RGB } as const;

export function toBackboneMessage(b: BackboneSpec): BackboneMessage {
  return { name: b.name, inChannels: b.inChannels ?? 0, width: b.width ?? 0, depth: b.depth ?? 0 };
}

/** A table per contract oneof: `satisfies` makes a kind that is not handled here fail to compile. */
type OneofTable<Spec extends { kind: string }, Message extends { $case: string } | undefined> = {
  [K in Spec['kind']]: (spec: Extract<Spec, { kind: K }>) => Extract<Message, { $case: K }>;
};

const DATASETS = {
  fashionMnist: (d) => ({ $case: 'fashionMnist', value: { directory: d.directory ?? '' } }),
  mnist: (d) => ({ $case: 'mnist', value: { directory: d.directory ?? '' } }),
  imageFolder: (d) => ({ $case: 'imageFolder', value: { root: d.root } }),
} satisfies OneofTable<DataSpec, DataMessage['dataset']>;

export function toDataMessage(d: DataSpec, defaultSeed: number): DataMessage {
  return {
    dataset: (DATASETS[d.kind] as (spec: DataSpec) => DataMessage['dataset'])(d),
    labelsPerClass: d.labelsPerClass ?? 0,
    valPerClass: d.valPerClass ?? 0,
    testPerClass: d.testPerClass ?? 0,
    classes: [...(d.classes ?? [])],
    seed: d.seed ?? defaultSeed,
    imageSize: d.imageSize ?? 0,
    color: COLORS[d.color ?? 'native'],
    augment: d.augment ?? false,
  };
}

const REGULARIZERS = {
  none: (r) => ({ $case: 'none', value: { weightDecay: r.weightDecay } }),
  l2fe: () => ({ $case: 'l2fe', value: {} }),
  l2sp: (r) => ({ $case: 'l2sp', value: { alpha: absoluteAlpha(r.alpha) } }),
  featureMap: (r) => ({ $case: 'featureMap', value: { alpha: absoluteAlpha(r.alpha) } }),
  delta: (r) => ({ $case: 'delta',
    value: { alpha: absoluteAlpha(r.alpha), headIterations: r.headIterations ?? 0, ablationBatches: r.ablationBatches ?? 0, temperature: r.temperature ?? 0 } }),
  afaSpatial: (r) => ({ $case: 'afaSpatial', value: { alpha: absoluteAlpha(r.alpha), hidden: r.hidden ?? 0 } }),
  afaChannel: (r) => ({ $case: 'afaChannel', value: { alpha: absoluteAlpha(r.alpha), hidden: r.hidden ?? 0, uniformFloor: r.uniformFloor ?? 0 } }),
} satisfies OneofTable<RegularizerSpec, Regularizer['kind']>;

export function toRegularizerMessage(r: RegularizerSpec): Regularizer {
  return { kind: (REGULARIZERS[r.kind] as (spec: RegularizerSpec) => Regularizer['kind'])(r) };
}

export function toOptimizerMessage(o: OptimizerSpec): OptimizerMessage {
  return o.kind === 'sgd'
    ? { kind: OptimizerKind.OPTIMIZER_KIND_SGD, lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay, nesterov: o.nesterov }
    : { kind: OptimizerKind.OPTIMIZER_KIND_ADAM, lr: o.lr, momentum: 0, weightDecay: o.weightDecay, nesterov: false };
}

export function toLrScheduleMessage(l: LrScheduleSpec): LrSchedule {
  switch (l.kind) {
    case 'constant':
      return { kind: { $case: 'constant', value: {} } };
    case 'step':
      return { kind: { $case: 'step', value: { atFractions: [...l.atFractions], gamma: l.gamma } } };
    case 'cosine':
      return { kind: { $case: 'cosine', value: { minFraction: l.minFraction } } };
  }
}

/** What a run asks of a stage besides its spec: observations that do not change the training. */
export interface StageObservation {
  /** Images in the attention snapshot of a stage with attention; 0 = none. */
  attentionImages?: number;
}

/** The regulariser message's alpha: a relative one travels in the stage (`alphaRelative`) and is 0 here. */
function absoluteAlpha(alpha: Alpha): number {
  return typeof alpha === 'number' ? alpha : 0;
}

function relativeAlpha(regularizer: RegularizerSpec): number {
  const alpha = 'alpha' in regularizer ? regularizer.alpha : 0;
  return typeof alpha === 'number' ? 0 : alpha.relative;
}

export function toStageMessage(s: StageSpec, defaultSeed: number, observe: StageObservation = {}): StageMessage {
  return {
    name: s.name,
    regularizer: toRegularizerMessage(s.regularizer),
    optimizer: toOptimizerMessage(s.optimizer),
    lrSchedule: toLrScheduleMessage(s.lrSchedule),
    iterations: s.iterations,
    batchSize: s.batchSize,
    headL2: s.headL2,
    evalEvery: s.evalEvery,
    logEvery: s.logEvery,
    seed: s.seed ?? defaultSeed,
    restoreBest: s.restoreBest,
    headLrMultiplier: s.headLrMultiplier,
    attentionLrMultiplier: s.attentionLrMultiplier ?? 0,
    featureCacheMb: s.featureCacheMb ?? 0,
    noFeatureCache: s.featureCache === false,
    attentionImages: observe.attentionImages ?? 0,
    alphaRelative: relativeAlpha(s.regularizer),
    noStabilityEstimate: false,
  };
}

export interface SessionOptions {
  backbone: BackboneSpec;
  data: DataSpec;
  seed: number;
  sourceWeights?: string;
  /** The source from the worker's weight store by hash (uploaded first), instead of a path. */
  sourceWeightsSha256?: string;
  device?: string;
  precision?: Precision;
  specJson?: string;
}

const PRECISION_MESSAGES: Record<Precision, PrecisionMessage> = {
  auto: PrecisionMessage.PRECISION_AUTO,
  fp32: PrecisionMessage.PRECISION_FP32,
  bf16: PrecisionMessage.PRECISION_BF16,
};

export function toCreateSessionRequest(o: SessionOptions): CreateSessionRequest {
  return {
    backbone: toBackboneMessage(o.backbone),
    sourceWeights: o.sourceWeights ?? '',
    data: toDataMessage(o.data, o.seed),
    layers: [...(o.backbone.layers ?? [])],
    seed: o.seed,
    device: o.device ?? '',
    numThreads: 0,
    specJson: o.specJson ?? '',
    noSource: !o.sourceWeights && !o.sourceWeightsSha256,
    precision: PRECISION_MESSAGES[o.precision ?? 'auto'],
    sourceWeightsSha256: o.sourceWeightsSha256 ?? '',
  };
}

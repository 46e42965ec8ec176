/**
 * The DSL's plain data -> the contract's messages, and (for errors) the contract's field paths back
 * to the spec's: the one place that maps between the two shapes (results come back in run/events.ts).
 */
import {
  ColorMode,
  CreateSessionRequest as CreateSessionMessage,
  DataSpec as DataSpecMessage,
  ResizeMode,
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
import { formatFieldProblem, SpecError } from '../errors.js';
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
  packed: (d) => ({ $case: 'packed', value: { sha256: d.sha256 } }),
} satisfies OneofTable<DataSpec, DataMessage['dataset']>;

const imageSet = (d: DataSpec) => (d.kind === 'imageFolder' || d.kind === 'packed' ? d : undefined);

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
    resizeMode: imageSet(d)?.resizeMode === 'shorterSide' ? ResizeMode.RESIZE_MODE_SHORTER_SIDE : ResizeMode.RESIZE_MODE_SQUARE,
    crop: imageSet(d)?.crop ?? 0,
    skipBadFiles: imageSet(d)?.skipBadFiles ?? false,
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
    // Where it is needed (a relative alpha) unless asked for: it costs up to 20 Hessian-vector products.
    noStabilityEstimate: !(s.stabilityEstimate ?? relativeAlpha(s.regularizer) > 0),
    measureDrift: s.measureDrift ?? false,
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

export const PRECISION_MESSAGES: Record<Precision, PrecisionMessage> = {
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

/** Where the contract's message parts sit in what the user wrote (e.g. `data` -> `target`). */
export interface SpecFieldContext {
  /** Path of the DataSpec: `target`, `source.data` (pretraining), or `data` (Worker.createSession). @default 'target' */
  data?: string;
  /** Path of the stage: `schedule[2]`, or '' for a stage given alone (Session.runStage). @default '' */
  stage?: string;
  /** Path of the source weights: `source.path`, or `sourceWeights` (Worker.createSession). @default 'source.path' */
  sourceWeights?: string;
  /** Contract fields named otherwise where the caller wrote them (e.g. LoadModel's `path` -> `checkpoint`). */
  renames?: Readonly<Record<string, string>>;
}

const camel = (segment: string) => segment.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const join = (...parts: string[]) => parts.filter(Boolean).join('.');
/** The oneof cases whose name is a segment of the contract's path and a `kind` value in the DSL. */
const ONEOF_CASE = /^(regularizer|lr_schedule)\.([a-z0-9_]+)(\.|$)/;

/**
 * The contract's path of a field the worker refused (`stage.regularizer.afa_spatial.alpha`,
 * `data.image_folder.root`) as the spec spells it (`schedule[0].regularizer.alpha`, `target.root`).
 * A path this table does not know keeps the contract's name, camel-cased.
 */
export function toSpecField(field: string, context: SpecFieldContext = {}): string {
  const renamed = context.renames?.[field];
  if (renamed) return renamed;
  const data = context.data ?? 'target';
  const stage = context.stage ?? '';
  if (field === 'source_weights' || field === 'source_weights_sha256') return context.sourceWeights ?? 'source.path';
  if (field === 'layers' || field.startsWith('layers[')) return `backbone.${field}`;
  if (field === 'data.dataset') return join(data, 'kind');
  if (field === 'data.packed.sha256') return join(data, 'sha256');
  const dataset = /^data\.(fashion_mnist|mnist|image_folder|packed)\.(.+)$/.exec(field);
  if (dataset) return join(data, camel(dataset[2]!));
  if (field.startsWith('data.')) return join(data, ...field.slice(5).split('.').map(camel));
  if (field === 'stage.attention_images') return 'attentionImages'; // a run option, not a spec field
  if (field === 'stage.alpha_relative') return join(stage, 'regularizer.alpha.relative');
  if (field === 'stage.no_stability_estimate') return join(stage, 'stabilityEstimate');
  if (field === 'stage.no_feature_cache') return join(stage, 'featureCache');
  if (field === 'stage.measure_drift') return join(stage, 'measureDrift');
  if (field === 'stage' || field.startsWith('stage.')) {
    const rest = field.slice('stage.'.length);
    const oneof = ONEOF_CASE.exec(rest);
    const collapsed = oneof ? `${oneof[1]}${oneof[3]}${rest.slice(oneof[0].length)}` : rest; // drop the case name
    return join(stage, ...collapsed.split('.').filter(Boolean).map(camel)) || field;
  }
  return field.split('.').map(camel).join('.');
}

/** The contract's field names a worker's problem text may mention in passing ("set image_size to ..."). */
const snake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const MENTIONED_FIELDS: ReadonlyMap<string, string> = new Map([
  ...Object.keys(DataSpecMessage.fromPartial({})).map((key): [string, string] => [snake(key), `data.${snake(key)}`]),
  ...Object.keys(CreateSessionMessage.fromPartial({})).map((key): [string, string] => [snake(key), snake(key)]),
]);

/** A problem's text with the contract's field names in it (snake_case words) as the spec spells them. */
function problemInSpecTerms(problem: string, context: SpecFieldContext): string {
  return problem.replace(/\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b/g, (word) => {
    const field = MENTIONED_FIELDS.get(word);
    return field === undefined ? word : toSpecField(field, context);
  });
}

/** A worker's refusal (SpecError) with its field (and the fields its problem mentions) named as the spec spells them; any other error as it is. */
export function inSpecTerms(error: unknown, context: SpecFieldContext = {}): unknown {
  if (!(error instanceof SpecError) || !error.field) return error;
  const field = toSpecField(error.field, context);
  const problem = problemInSpecTerms(error.problem, context);
  if (field === error.field && problem === error.problem) return error;
  return new SpecError(error.method, formatFieldProblem(field, problem, error.valid), { field, problem, valid: error.valid },
    { cause: error });
}

/** Ready-made schedules: AFA's two stages (the paper's Algorithm 1) and one-stage baselines. */
import {
  afaChannel,
  afaSpatial,
  delta,
  featureMap,
  l2fe,
  l2sp,
  noRegularizer,
  relative,
  type AfaChannelRegularizer,
  type RegularizerSpec,
  type Alpha,
  type RelativeAlpha,
} from './regularizers.js';
import { lr, promoteTargetToSource, sgd, stage, type ScheduleStep, type StageOptions, type StageSpec } from './stage.js';

export interface AfaStageOptions {
  /** @default {@link DEFAULT_ALPHA}, 0.01x the stability limit (the paper's ResNet-101 values are `PAPER_ALPHAS`) */
  alpha?: Alpha;
  /** @default 4500 (T/2 with the paper's T = 9000) */
  iterations?: number;
  /** @default 0.01 for stage I, 0.001 for stage II (the paper's) */
  lr?: number;
  hidden?: number;
  /** lr of the attention module relative to the stage's. @default 1 */
  attentionLrMultiplier?: number;
  evalEvery?: number;
  logEvery?: number;
  /** See {@link StageOptions.measureDrift}. @default false */
  measureDrift?: boolean;
  /** See {@link StageOptions.stabilityEstimate}. @default only for a relative alpha */
  stabilityEstimate?: boolean;
}

export interface AfaChannelStageOptions extends AfaStageOptions {
  /** See {@link AfaChannelRegularizer.uniformFloor}. @default 0 (the paper's ACT) */
  uniformFloor?: number;
}

export interface AfaOptions {
  spatial?: AfaStageOptions;
  channel?: AfaChannelStageOptions;
  /** @default 64 */
  batchSize?: number;
  /** @default 0.01 */
  headL2?: number;
}

/**
 * The strength every alignment regulariser defaults to: 0.01x the step-size stability limit the
 * worker estimates at the stage's start. In the cross-task study (docs/reproduction.md: small
 * ResNet, three tasks, 5 seeds) validation chose 0.01x or 0.03x, the weakest points of the grid,
 * for feature-map, DELTA, AST and ACT on every task (AFA: 0.01x, 0.03x, 0.1x); stronger is worse,
 * in proportion, on every task, and at 0.01x every method is within about a point of fine-tuning
 * on all three. Not a gain over fine-tuning: the strength that costs least.
 */
export const DEFAULT_ALPHA: RelativeAlpha = relative(0.01);

/** The paper's alphas for its two backbones (absolute: tuned for ImageNet ResNet-101 / MobileNetV2). */
export const PAPER_ALPHAS = {
  resnet101: { spatial: 0.1, channel: 0.15 },
  mobilenetV2: { spatial: 0.09, channel: 0.04 },
} as const;

/**
 * AFA: stage I aligns with spatial attention (AST) at lr 0.01; then the source is replaced by the
 * stage-I target; stage II aligns with a fresh channel attention (ACT) at lr 0.001. Both decay the
 * lr x0.1 at 2/3. Alphas default to {@link DEFAULT_ALPHA}; the paper's are `PAPER_ALPHAS`.
 */
export function afa(options: AfaOptions = {}): ScheduleStep[] {
  const common = { batchSize: options.batchSize, headL2: options.headL2, lrSchedule: lr.step() };
  const afaStage = (name: string, regularizer: RegularizerSpec, o: AfaStageOptions, defaultLr: number) =>
    stage({ ...common, name, regularizer, iterations: o.iterations ?? 4500, optimizer: sgd({ lr: o.lr ?? defaultLr }),
      evalEvery: o.evalEvery, logEvery: o.logEvery, attentionLrMultiplier: o.attentionLrMultiplier, measureDrift: o.measureDrift,
      stabilityEstimate: o.stabilityEstimate });
  const sp = options.spatial ?? {};
  const ch = options.channel ?? {};
  return [
    afaStage('afa-spatial', afaSpatial({ alpha: sp.alpha ?? DEFAULT_ALPHA, hidden: sp.hidden }), sp, 0.01),
    promoteTargetToSource(),
    afaStage('afa-channel', afaChannel({ alpha: ch.alpha ?? DEFAULT_ALPHA, hidden: ch.hidden, uniformFloor: ch.uniformFloor }), ch, 0.001),
  ];
}

export type HeadWarmupOptions = Omit<StageOptions, 'regularizer' | 'iterations' | 'name'> & {
  /** @default 100 */
  iterations?: number;
};

/**
 * A head warm-up: the new head trained alone (backbone frozen, as L2-FE) at lr 0.2, so the first
 * steps of the schedule after it do not back-propagate a random head's gradients into the
 * backbone. In the reproduction study it lifted every method on the 10-label task.
 */
export function headWarmup(options: HeadWarmupOptions = {}): StageSpec {
  return stage({ lr: 0.2, ...options, name: 'head-warmup', regularizer: l2fe(), iterations: options.iterations ?? 100 });
}

/** `schedule` with a {@link headWarmup} stage in front. */
export function withHeadWarmup(schedule: ScheduleStep[], options: HeadWarmupOptions = {}): ScheduleStep[] {
  return [headWarmup(options), ...schedule];
}

export type BaselineOptions = Omit<StageOptions, 'regularizer' | 'iterations'> & {
  /** @default 9000 (the paper's T) */
  iterations?: number;
};

function oneStage(regularizer: RegularizerSpec, options: BaselineOptions): ScheduleStep[] {
  return [stage({ lr: 0.01, ...options, iterations: options.iterations ?? 9000, regularizer })];
}

/** One-stage baselines at the paper's lr 0.01 for T iterations. */
export const baseline = {
  fineTune: (options: BaselineOptions & { weightDecay?: number } = {}) =>
    oneStage(noRegularizer({ weightDecay: options.weightDecay }), withoutKey(options, 'weightDecay')),
  l2fe: (options: BaselineOptions = {}) => oneStage(l2fe(), options),
  l2sp: (options: BaselineOptions & { alpha: Alpha }) => oneStage(l2sp({ alpha: options.alpha }), withoutKey(options, 'alpha')),
  // The feature regularisers' alpha defaults to DEFAULT_ALPHA (L2-SP's was not studied: give it).
  featureMap: (options: BaselineOptions & { alpha?: Alpha } = {}) =>
    oneStage(featureMap({ alpha: options.alpha ?? DEFAULT_ALPHA }), withoutKey(options, 'alpha')),
  delta: (options: BaselineOptions & { alpha?: Alpha } = {}) => oneStage(delta({ alpha: options.alpha ?? DEFAULT_ALPHA }), withoutKey(options, 'alpha')),
  afaSpatial: (options: BaselineOptions & { alpha?: Alpha } = {}) =>
    oneStage(afaSpatial({ alpha: options.alpha ?? DEFAULT_ALPHA }), withoutKey(options, 'alpha')),
  afaChannel: (options: BaselineOptions & { alpha?: Alpha; uniformFloor?: number } = {}) =>
    oneStage(afaChannel({ alpha: options.alpha ?? DEFAULT_ALPHA, uniformFloor: options.uniformFloor }),
      withoutKey(withoutKey(options, 'alpha'), 'uniformFloor')),
} as const;

function withoutKey<T extends object, K extends keyof T>(value: T, key: K): Omit<T, K> {
  const { [key]: _dropped, ...rest } = value;
  return rest;
}

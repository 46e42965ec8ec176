/**
 * Regularisers: the alignment term Omega of the objective
 * `CE + alpha * Omega + beta * 0.5 * ||W_fc||^2`. Each is a baseline of the paper or one of AFA's
 * two attentive terms.
 *
 * Feature terms are averaged over the batch. The public reference code sums over the batch for
 * `featureMap` and `delta`, so its alphas for those two equal ours divided by the batch size.
 */
import type { Regularizer as RegularizerMessage } from '../gen/afa/v1/afa.js';

/** The regulariser kinds: the contract's `Regularizer.kind` oneof names them (the one list). */
export type RegularizerKind = NonNullable<RegularizerMessage['kind']>['$case'];

/**
 * A strength relative to the step-size stability limit the worker estimates at the stage's start:
 * alpha = fraction x alpha_max, alpha_max = 2 (1 + momentum) / (lr x lambda_max), lambda_max the top
 * eigenvalue of Omega's Hessian in the backbone weights. SGD only.
 */
export interface RelativeAlpha {
  readonly relative: number;
}
/** An absolute alpha, or one relative to the stability limit (`relative(0.3)`). */
export type Alpha = number | RelativeAlpha;

/** `alpha: relative(0.3)` = 0.3 x the stability limit alpha_max of the stage (see {@link RelativeAlpha}). */
export const relative = (fraction: number): RelativeAlpha => ({ relative: fraction });

/** Plain fine-tuning ("L2" in the paper): no alignment, ordinary weight decay on all weights. */
export interface NoRegularizer {
  readonly kind: 'none';
  /** @default 1e-4 */
  readonly weightDecay: number;
}
/** L2-FE: the backbone is frozen, only the new head is trained. */
export interface L2FeRegularizer {
  readonly kind: 'l2fe';
}
/** L2-SP: alpha * 0.5 * ||w - w_source||^2 over the backbone. */
export interface L2SpRegularizer {
  readonly kind: 'l2sp';
  readonly alpha: Alpha;
}
/** Feature-map alignment without attention. */
export interface FeatureMapRegularizer {
  readonly kind: 'featureMap';
  readonly alpha: Alpha;
}
/** DELTA: alignment weighted by fixed per-channel importance from ablation. */
export interface DeltaRegularizer {
  readonly kind: 'delta';
  readonly alpha: Alpha;
  /** Head-only steps before the ablation. @default 100 (worker default) */
  readonly headIterations?: number;
  /** Batches each ablation is measured on. @default 2 (worker default) */
  readonly ablationBatches?: number;
  /** Softmax temperature of the z-scored loss rises. @default 5 */
  readonly temperature?: number;
}
/** AFA spatial attentive transfer (AST). */
export interface AfaSpatialRegularizer {
  readonly kind: 'afaSpatial';
  readonly alpha: Alpha;
  /** Hidden units of the attention MLP. @default the feature map height */
  readonly hidden?: number;
}
/** AFA channel attentive transfer (ACT). */
export interface AfaChannelRegularizer {
  readonly kind: 'afaChannel';
  readonly alpha: Alpha;
  /** Hidden units of the attention MLP. @default the feature map height */
  readonly hidden?: number;
  /**
   * In [0, 1]: weights floor / C + (1 - floor) x softmax, so no channel falls below floor / C and
   * the attention cannot collapse onto one channel; 1 is plain feature-map alignment.
   * @default 0 (the paper's ACT)
   */
  readonly uniformFloor?: number;
}

export type RegularizerSpec =
  | NoRegularizer
  | L2FeRegularizer
  | L2SpRegularizer
  | FeatureMapRegularizer
  | DeltaRegularizer
  | AfaSpatialRegularizer
  | AfaChannelRegularizer;

/** True only when `A` and `B` are the same union; a contract kind the DSL lacks fails to compile here. */
type SameUnion<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const everyContractKindHasASpec: SameUnion<RegularizerSpec['kind'], RegularizerKind> = true;
void everyContractKindHasASpec;

export interface RegularizerFacts {
  /** Compares the target with a frozen source model, so the experiment needs one. */
  readonly needsSource: boolean;
  /** Aligns feature maps at the backbone's aligned layers. */
  readonly alignsFeatures: boolean;
  /** Learns attention modules (reported per layer by their entropy). */
  readonly hasAttention: boolean;
}

/** What each kind is, in the contract's order; every kind must be here for the SDK to compile. */
export const REGULARIZER_FACTS = {
  none: { needsSource: false, alignsFeatures: false, hasAttention: false },
  l2fe: { needsSource: false, alignsFeatures: false, hasAttention: false },
  l2sp: { needsSource: true, alignsFeatures: false, hasAttention: false },
  featureMap: { needsSource: true, alignsFeatures: true, hasAttention: false },
  delta: { needsSource: true, alignsFeatures: true, hasAttention: false },
  afaSpatial: { needsSource: true, alignsFeatures: true, hasAttention: true },
  afaChannel: { needsSource: true, alignsFeatures: true, hasAttention: true },
} as const satisfies Record<RegularizerKind, RegularizerFacts>;

export const REGULARIZER_KINDS = Object.keys(REGULARIZER_FACTS) as readonly RegularizerKind[];

/** Whether the regulariser aligns to a frozen source (and so needs one). */
export function needsSource(kind: RegularizerKind): boolean {
  return REGULARIZER_FACTS[kind].needsSource;
}

export const DEFAULT_WEIGHT_DECAY = 1e-4;

export const noRegularizer = (options: { weightDecay?: number } = {}): NoRegularizer => ({
  kind: 'none',
  weightDecay: options.weightDecay ?? DEFAULT_WEIGHT_DECAY,
});
export const l2fe = (): L2FeRegularizer => ({ kind: 'l2fe' });
export const l2sp = (options: { alpha: Alpha }): L2SpRegularizer => ({ kind: 'l2sp', ...options });
export const featureMap = (options: { alpha: Alpha }): FeatureMapRegularizer => ({ kind: 'featureMap', ...options });
export const delta = (options: Omit<DeltaRegularizer, 'kind'>): DeltaRegularizer => ({ kind: 'delta', ...options });
export const afaSpatial = (options: Omit<AfaSpatialRegularizer, 'kind'>): AfaSpatialRegularizer => ({ kind: 'afaSpatial', ...options });
export const afaChannel = (options: Omit<AfaChannelRegularizer, 'kind'>): AfaChannelRegularizer => ({ kind: 'afaChannel', ...options });

/** Stages, the promote step between them, optimisers and lr schedules. */
import { noRegularizer, type RegularizerSpec } from './regularizers.js';

export type OptimizerSpec =
  | { readonly kind: 'sgd'; readonly lr: number; readonly momentum: number; readonly weightDecay: number; readonly nesterov: boolean }
  | { readonly kind: 'adam'; readonly lr: number; readonly weightDecay: number };

export type LrScheduleSpec =
  | { readonly kind: 'constant' }
  | { readonly kind: 'step'; readonly atFractions: readonly number[]; readonly gamma: number }
  | { readonly kind: 'cosine'; readonly minFraction: number };

/** SGD with momentum (the paper's optimiser). */
export const sgd = (options: { lr: number; momentum?: number; weightDecay?: number; nesterov?: boolean }): OptimizerSpec => ({
  kind: 'sgd',
  momentum: 0.9,
  weightDecay: 0,
  nesterov: false,
  ...options,
});
export const adam = (options: { lr: number; weightDecay?: number }): OptimizerSpec => ({ kind: 'adam', weightDecay: 0, ...options });

export const lr = {
  constant: (): LrScheduleSpec => ({ kind: 'constant' }),
  /** Multiply by `gamma` at each fraction of the stage (the paper: x0.1 at 2/3). */
  step: (options: { atFractions?: readonly number[]; gamma?: number } = {}): LrScheduleSpec => ({
    kind: 'step',
    atFractions: options.atFractions ?? [2 / 3],
    gamma: options.gamma ?? 0.1,
  }),
  cosine: (options: { minFraction?: number } = {}): LrScheduleSpec => ({ kind: 'cosine', minFraction: options.minFraction ?? 0 }),
} as const;

export interface StageSpec {
  readonly kind: 'stage';
  readonly name: string;
  readonly regularizer: RegularizerSpec;
  readonly iterations: number;
  readonly batchSize: number;
  readonly optimizer: OptimizerSpec;
  readonly lrSchedule: LrScheduleSpec;
  /** beta of `beta * 0.5 * ||W_fc||^2`. */
  readonly headL2: number;
  /** Validation every N steps (and at the end); 0 = only at the end. */
  readonly evalEvery: number;
  /** A step event every N steps; 0 = none. */
  readonly logEvery: number;
  /** Seed of batch order and attention init; `undefined` = the experiment's seed. */
  readonly seed?: number;
  /** End the stage on the weights of its best validation step (model selection on val only). */
  readonly restoreBest: boolean;
  /** lr of the new head relative to the backbone's. */
  readonly headLrMultiplier: number;
  /** lr of the attention modules relative to the backbone's. @default 1 */
  readonly attentionLrMultiplier?: number;
  /** Memory budget (MiB) for caching the frozen source's maps of the training images; used only
   * without augmentation. @default the worker's (1024) */
  readonly featureCacheMb?: number;
  /** Set false to always run the source forward. @default true */
  readonly featureCache?: boolean;
  /** Measure the target's drift from the original source at the end (`StageResult.drift`). @default false */
  readonly measureDrift?: boolean;
  /** Estimate the stability limit at the stage's start; `undefined` = only where an alpha is relative. */
  readonly stabilityEstimate?: boolean;
}

/** The AFA stage-II rule: the frozen source becomes the current target backbone. */
export interface PromoteStep {
  readonly kind: 'promoteTargetToSource';
}

export type ScheduleStep = StageSpec | PromoteStep;

export interface StageOptions {
  name?: string;
  /** @default none (plain fine-tuning) */
  regularizer?: RegularizerSpec;
  iterations: number;
  /** @default 64 (the paper's) */
  batchSize?: number;
  /** @default sgd({ lr: 0.01, momentum: 0.9 }) */
  optimizer?: OptimizerSpec;
  /** Shorthand for `optimizer: sgd({ lr })`. */
  lr?: number;
  /** @default lr.step() (x0.1 at 2/3, the paper's) */
  lrSchedule?: LrScheduleSpec;
  /** @default 0.01 (the paper's beta) */
  headL2?: number;
  /** @default iterations / 10, at least 1 */
  evalEvery?: number;
  /** @default iterations / 50, at least 1 */
  logEvery?: number;
  seed?: number;
  /** @default true */
  restoreBest?: boolean;
  /** @default 1 */
  headLrMultiplier?: number;
  /**
   * lr of the attention modules (AST/ACT) relative to the backbone's. Their inputs are whole
   * feature maps, so at the backbone's lr the attention can collapse onto one channel in a few
   * steps; a smaller multiplier keeps it spread for longer. @default 1 (the paper's single optimiser)
   */
  attentionLrMultiplier?: number;
  featureCacheMb?: number;
  featureCache?: boolean;
  /**
   * At the end of the stage, measure how far the target moved from the source the run started
   * from: the backbone's weight distance and each aligned layer's feature discrepancy
   * (`StageResult.drift`). It costs a copy of the model and a forward of the validation images.
   * @default false
   */
  measureDrift?: boolean;
  /**
   * Estimate the step-size stability limit alpha_max at the stage's start (power iteration on
   * Hessian-vector products of Omega, bounded by 20 products and a few per cent of the stage's
   * estimated time; `StageResult.stability`). A relative alpha (`relative(x)`) needs it and cannot
   * turn it off; an absolute alpha skips it unless this is true (to see where that alpha sits).
   * @default true for a relative alpha, false otherwise
   */
  stabilityEstimate?: boolean;
}

export const PAPER_BETA = 0.01;

export function stage(options: StageOptions): StageSpec {
  const regularizer = options.regularizer ?? noRegularizer();
  const { lr: lrShorthand, ...rest } = options;
  return {
    kind: 'stage',
    name: options.name ?? regularizer.kind,
    regularizer,
    batchSize: 64,
    optimizer: options.optimizer ?? sgd({ lr: lrShorthand ?? 0.01 }),
    lrSchedule: lr.step(),
    headL2: PAPER_BETA,
    evalEvery: Math.max(1, Math.round(options.iterations / 10)),
    logEvery: Math.max(1, Math.round(options.iterations / 50)),
    restoreBest: true,
    headLrMultiplier: 1,
    ...stripUndefined(rest),
  } as StageSpec;
}

export const promoteTargetToSource = (): PromoteStep => ({ kind: 'promoteTargetToSource' });

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

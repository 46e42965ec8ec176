/**
 * Sweep definitions: a base experiment, a search space over any spec field (by path), seeds as
 * their own dimension, a validation metric to select on, and a budget for random search.
 */
import type { ExperimentSpec } from '../dsl/experiment.js';

/** Values tried in order (grid search) or drawn uniformly (random search). */
export interface GridDimension {
  readonly kind: 'grid';
  readonly values: readonly unknown[];
  /** Labels for the values in tables and reports. @default a short JSON form of each value */
  readonly labels?: readonly string[];
  /**
   * Each value is a set of `path -> value` overrides applied together (built by `variants()`), so one
   * dimension can change fields that only make sense jointly: a method with its own alpha, a source
   * and a schedule. The dimension's key in `space` is then a name, not a spec path.
   */
  readonly overrides?: true;
}
export interface UniformDimension {
  readonly kind: 'uniform';
  readonly low: number;
  readonly high: number;
}
export interface LogUniformDimension {
  readonly kind: 'logUniform';
  readonly low: number;
  readonly high: number;
}
export interface IntUniformDimension {
  readonly kind: 'intUniform';
  readonly low: number;
  readonly high: number;
}
export type Dimension = GridDimension | UniformDimension | LogUniformDimension | IntUniformDimension;

/**
 * How configurations are chosen: every grid combination, `budget` random draws, or `budget`
 * configurations from an Optuna sampler that learns from the finished ones (TPE, a Gaussian
 * process, CMA-ES; `python -m afa_worker search` holds the study).
 */
export const SEARCHES = ['grid', 'random', 'tpe', 'gp', 'cmaes'] as const;
/** The searches Optuna's samplers run (the others are planned up front). */
export const ADAPTIVE_SEARCHES = ['tpe', 'gp', 'cmaes'] as const;
export type Search = (typeof SEARCHES)[number];

/** Metrics a sweep may select on: validation only, never test. */
export const SWEEP_METRICS = ['bestValAccuracy', 'finalValAccuracy', 'finalValLoss'] as const;
export type SweepMetric = (typeof SWEEP_METRICS)[number];

export interface SweepSpec {
  readonly kind: 'sweep';
  readonly name: string;
  readonly base: ExperimentSpec;
  /** Spec path (e.g. `schedule[0].regularizer.alpha`, `target.labelsPerClass`) -> dimension. */
  readonly space: Readonly<Record<string, Dimension>>;
  readonly seeds: readonly number[];
  readonly metric: SweepMetric;
  readonly goal: 'max' | 'min';
  /** 'grid': every combination; 'random': `budget` configurations drawn from the space; 'tpe' | 'gp' | 'cmaes': `budget` configurations asked of Optuna's sampler. */
  readonly search: Search;
  /** Configurations for random and adaptive search (each runs once per seed). */
  readonly budget: number;
  /** Seed of the random search's draws. */
  readonly searchSeed: number;
}

export interface SweepInput {
  name: string;
  base: ExperimentSpec;
  space: Record<string, Dimension>;
  /** @default [0] */
  seeds?: readonly number[];
  /** @default 'bestValAccuracy' */
  metric?: SweepMetric;
  /** @default 'max' for accuracies, 'min' for losses */
  goal?: 'max' | 'min';
  /** @default 'grid' when every dimension is a grid, else 'random' */
  search?: Search;
  /** Configurations for random and adaptive search. @default 10 */
  budget?: number;
  /** @default 0 */
  searchSeed?: number;
}

export const grid = (values: readonly unknown[], labels?: readonly string[]): GridDimension => ({ kind: 'grid', values, labels });
/** A named choice (e.g. methods): the record's keys label the values. */
export const choice = (options: Readonly<Record<string, unknown>>): GridDimension => ({
  kind: 'grid',
  values: Object.values(options),
  labels: Object.keys(options),
});
/**
 * Named variants, each a set of spec fields set together: `variants({ scratch: { source: fromScratch() },
 * 'L2-SP 0.01': { schedule: baseline.l2sp({ alpha: 0.01 }) } })`. Use it where a grid product would make
 * meaningless combinations (an alpha for a method that has none).
 */
export const variants = (options: Readonly<Record<string, Readonly<Record<string, unknown>>>>): GridDimension => ({
  kind: 'grid',
  values: Object.values(options),
  labels: Object.keys(options),
  overrides: true,
});
export const uniform = (low: number, high: number): UniformDimension => ({ kind: 'uniform', low, high });
export const logUniform = (low: number, high: number): LogUniformDimension => ({ kind: 'logUniform', low, high });
export const intUniform = (low: number, high: number): IntUniformDimension => ({ kind: 'intUniform', low, high });

export function sweep(input: SweepInput): SweepSpec {
  const allGrid = Object.values(input.space).every((d) => d.kind === 'grid');
  const metric = input.metric ?? 'bestValAccuracy';
  return {
    kind: 'sweep',
    name: input.name,
    base: input.base,
    space: input.space,
    seeds: input.seeds ?? [0],
    metric,
    goal: input.goal ?? (metric === 'finalValLoss' ? 'min' : 'max'),
    search: input.search ?? (allGrid ? 'grid' : 'random'),
    budget: input.budget ?? 10,
    searchSeed: input.searchSeed ?? 0,
  };
}

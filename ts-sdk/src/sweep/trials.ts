/** Expanding a sweep into trials: configurations (grid product or random draws) times seeds. */
import { specHash, type ExperimentSpec } from '../dsl/experiment.js';
import { contentHash } from '../dsl/hash.js';
import { parseExperiment } from '../dsl/validate.js';
import { setPath } from './spec-path.js';
import type { Dimension, SweepSpec } from './space.js';
import { parseSweep } from './validate.js';

export interface TrialPlan {
  /** The trial spec's content hash: a finished trial is recognised by it on resume. */
  trialId: string;
  /** Same for every seed of one configuration. */
  configId: string;
  /** Path -> value for this configuration. */
  values: Record<string, unknown>;
  /** Path -> label for tables and reports. */
  labels: Record<string, string>;
  seed: number;
  spec: ExperimentSpec;
}

/** A deterministic PRNG (mulberry32) so random search is reproducible from `searchSeed`. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function formatValue(value: unknown): string {
  if (typeof value === 'number') {
    if (Number.isInteger(value)) return String(value);
    const abs = Math.abs(value);
    return abs !== 0 && (abs < 1e-3 || abs >= 1e4) ? value.toExponential(2).replace(/\.?0+e/, 'e') : String(Number(value.toPrecision(3)));
  }
  if (typeof value === 'string' || typeof value === 'boolean') return String(value);
  return `#${contentHash(value).slice(0, 6)}`;
}

function draw(dim: Dimension, u: number): { value: unknown; label?: string } {
  switch (dim.kind) {
    case 'grid': {
      const i = Math.min(dim.values.length - 1, Math.floor(u * dim.values.length));
      return { value: dim.values[i], label: dim.labels?.[i] };
    }
    case 'uniform':
      return { value: dim.low + u * (dim.high - dim.low) };
    case 'logUniform':
      return { value: Math.exp(Math.log(dim.low) + u * (Math.log(dim.high) - Math.log(dim.low))) };
    case 'intUniform':
      return { value: Math.min(dim.high, dim.low + Math.floor(u * (dim.high - dim.low + 1))) };
  }
}

export type Assignment = { values: Record<string, unknown>; labels: Record<string, string> };

function gridAssignments(space: SweepSpec['space']): Assignment[] {
  let combos: Assignment[] = [{ values: {}, labels: {} }];
  for (const [path, dim] of Object.entries(space)) {
    if (dim.kind !== 'grid') continue; // refused by parseSweep
    combos = combos.flatMap((c) =>
      dim.values.map((value, i) => ({
        values: { ...c.values, [path]: value },
        labels: { ...c.labels, [path]: dim.labels?.[i] ?? formatValue(value) },
      })));
  }
  return combos;
}

/**
 * Each choice's values in a stratified order: blocks of one random permutation each, so over `n`
 * draws every value comes up n/k times, give or take one (independent uniform draws gave 5 of 6
 * draws one method). Seeded apart from the continuous draws, which stay what they always were.
 */
function stratified(k: number, n: number, seed: number): number[] {
  const next = rng(seed);
  const order: number[] = [];
  while (order.length < n) {
    const block = Array.from({ length: k }, (_, i) => i);
    for (let i = k - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [block[i], block[j]] = [block[j]!, block[i]!];
    }
    order.push(...block);
  }
  return order.slice(0, n);
}

function randomAssignments(sweep: SweepSpec): Assignment[] {
  const next = rng(sweep.searchSeed);
  const choices = Object.entries(sweep.space).map(([, dim], d) => (dim.kind === 'grid' ? stratified(dim.values.length, sweep.budget, sweep.searchSeed * 1009 + d + 1) : []));
  return Array.from({ length: sweep.budget }, (_, i) => {
    const a: Assignment = { values: {}, labels: {} };
    Object.entries(sweep.space).forEach(([path, dim], d) => {
      const u = next(); // drawn for every dimension, so each continuous one sees the same stream as before
      const { value, label } = dim.kind === 'grid' ? { value: dim.values[choices[d]![i]!], label: dim.labels?.[choices[d]![i]!] } : draw(dim, u);
      a.values[path] = value;
      a.labels[path] = label ?? formatValue(value);
    });
    return a;
  });
}

/** A configuration's short name: the last part of each swept path with its value's label. */
export function configLabel(labels: Record<string, string>, separator = ','): string {
  return Object.entries(labels).map(([k, v]) => `${k.split('.').at(-1)}=${v}`).join(separator);
}

/** The spec with one configuration's values set: a variants dimension sets each of its paths. */
export function applyValues(sweep: SweepSpec, values: Record<string, unknown>): unknown {
  let spec: unknown = sweep.base;
  for (const [key, value] of Object.entries(values)) {
    const dim = sweep.space[key];
    if (dim?.kind === 'grid' && dim.overrides) {
      for (const [path, v] of Object.entries(value as Record<string, unknown>)) spec = setPath(spec, path, v);
    } else {
      spec = setPath(spec, key, value);
    }
  }
  return spec;
}

/** One configuration's trials, one per seed, each spec validated (an error names the trial, then the field). */
export function trialsOf(sweep: SweepSpec, a: Assignment, baseHash = specHash(sweep.base)): TrialPlan[] {
  const configId = contentHash({ base: baseHash, values: a.values });
  const label = configLabel(a.labels);
  return sweep.seeds.map((seed) => {
    const spec = { ...(applyValues(sweep, a.values) as ExperimentSpec), seed, name: `${sweep.base.name}[${label}]` };
    const parsed = parseExperiment(spec, `trial[${label || 'base'}, seed ${seed}]`);
    return { trialId: specHash(parsed), configId, values: a.values, labels: a.labels, seed, spec: parsed };
  });
}

/** The configurations a grid or random search plans, in order. */
export function plannedAssignments(sweep: SweepSpec): Assignment[] {
  return sweep.search === 'grid' ? gridAssignments(sweep.space) : randomAssignments(sweep);
}

/** Every trial of the sweep, the definition and each trial's spec validated before anything runs. */
export function planTrials(sweep: SweepSpec): TrialPlan[] {
  parseSweep(sweep);
  const baseHash = specHash(sweep.base);
  return plannedAssignments(sweep).flatMap((a) => trialsOf(sweep, a, baseHash));
}

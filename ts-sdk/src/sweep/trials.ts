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

type Assignment = { values: Record<string, unknown>; labels: Record<string, string> };

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

function randomAssignments(sweep: SweepSpec): Assignment[] {
  const next = rng(sweep.searchSeed);
  return Array.from({ length: sweep.budget }, () => {
    const a: Assignment = { values: {}, labels: {} };
    for (const [path, dim] of Object.entries(sweep.space)) {
      const { value, label } = draw(dim, next());
      a.values[path] = value;
      a.labels[path] = label ?? formatValue(value);
    }
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

/** Every trial of the sweep, the definition and each trial's spec validated before anything runs. */
export function planTrials(sweep: SweepSpec): TrialPlan[] {
  parseSweep(sweep);
  const assignments = sweep.search === 'grid' ? gridAssignments(sweep.space) : randomAssignments(sweep);
  const baseHash = specHash(sweep.base);
  const trials: TrialPlan[] = [];
  for (const a of assignments) {
    const configId = contentHash({ base: baseHash, values: a.values });
    const label = configLabel(a.labels);
    for (const seed of sweep.seeds) {
      const spec = { ...(applyValues(sweep, a.values) as ExperimentSpec), seed, name: `${sweep.base.name}[${label}]` };
      // An error names the trial, then the field of its spec.
      const parsed = parseExperiment(spec, `trial[${label || 'base'}, seed ${seed}]`);
      trials.push({ trialId: specHash(parsed), configId, values: a.values, labels: a.labels, seed, spec: parsed });
    }
  }
  return trials;
}

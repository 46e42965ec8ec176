/** Expanding a sweep into trials: configurations (grid product or random draws) times seeds. */
import { specHash, type ExperimentSpec } from '../dsl/experiment.js';
import { contentHash } from '../dsl/hash.js';
import { parseExperiment } from '../dsl/validate.js';
import { InvalidSpecError } from '../errors.js';
import { getPath, setPath } from './paths.js';
import type { Dimension, SweepSpec } from './space.js';

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
    if (dim.kind !== 'grid') throw new InvalidSpecError(`space.${path}`, `grid search needs grid dimensions, got ${dim.kind}`, ['grid']);
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

function checkOverrides(field: string, values: readonly unknown[], labels: readonly string[] | undefined, base: unknown): void {
  values.forEach((value, i) => {
    const where = `${field}[${JSON.stringify(labels?.[i] ?? i)}]`;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new InvalidSpecError(where, 'must map spec paths to values');
    }
    for (const path of Object.keys(value)) checkPath(`${where}.${path}`, base, path);
  });
}

function checkPath(field: string, base: unknown, path: string): void {
  if (getPath(base, path) === undefined) {
    throw new InvalidSpecError(field, 'is not a field of the base experiment (paths look like schedule[0].regularizer.alpha)');
  }
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

function checkSpace(sweep: SweepSpec): void {
  for (const [path, dim] of Object.entries(sweep.space)) {
    const field = `space.${path}`;
    if (dim.kind === 'grid' && dim.overrides) {
      checkOverrides(field, dim.values, dim.labels, sweep.base);
    } else {
      checkPath(field, sweep.base, path);
    }
    if (dim.kind === 'grid' && dim.values.length === 0) throw new InvalidSpecError(field, 'has no values');
    if (dim.kind !== 'grid' && !(dim.low <= dim.high)) throw new InvalidSpecError(field, `low ${dim.low} is above high ${dim.high}`);
    if (dim.kind === 'logUniform' && !(dim.low > 0)) throw new InvalidSpecError(field, 'a log-uniform range must be positive');
  }
  if (!sweep.seeds.length) throw new InvalidSpecError('seeds', 'must not be empty');
}

/** Every trial of the sweep, each spec validated before anything runs. */
export function planTrials(sweep: SweepSpec): TrialPlan[] {
  checkSpace(sweep);
  const assignments = sweep.search === 'grid' ? gridAssignments(sweep.space) : randomAssignments(sweep);
  const baseHash = specHash(sweep.base);
  const trials: TrialPlan[] = [];
  for (const a of assignments) {
    const configId = contentHash({ base: baseHash, values: a.values });
    const label = configLabel(a.labels);
    for (const seed of sweep.seeds) {
      const spec = { ...(applyValues(sweep, a.values) as ExperimentSpec), seed, name: `${sweep.base.name}[${label}]` };
      let parsed: ExperimentSpec;
      try {
        parsed = parseExperiment(spec);
      } catch (error) {
        if (error instanceof InvalidSpecError) {
          throw new InvalidSpecError(`trial ${label} seed ${seed}: ${error.field}`, error.problem, error.valid);
        }
        throw error;
      }
      trials.push({ trialId: specHash(parsed), configId, values: a.values, labels: a.labels, seed, spec: parsed });
    }
  }
  return trials;
}

/** Run-time validation of a sweep loaded from a file (TS default export or JSON). */
import { parseExperiment } from '../dsl/validate.js';
import { InvalidSpecError } from '../errors.js';
import { SWEEP_METRICS, type Dimension, type SweepSpec } from './space.js';

function fail(field: string, problem: string, valid?: readonly string[]): never {
  throw new InvalidSpecError(field, problem, valid);
}

function checkDimension(path: string, value: unknown): Dimension {
  const field = `space.${path}`;
  if (typeof value !== 'object' || value === null) fail(field, 'must be a dimension: grid([...]), choice({...}), variants({...}), uniform(a, b), logUniform(a, b), intUniform(a, b)');
  const d = value as Record<string, unknown>;
  const kinds = ['grid', 'uniform', 'logUniform', 'intUniform'] as const;
  if (!kinds.includes(d.kind as (typeof kinds)[number])) fail(`${field}.kind`, `unknown value ${JSON.stringify(d.kind)}`, kinds);
  if (d.kind === 'grid') {
    if (!Array.isArray(d.values) || d.values.length === 0) fail(`${field}.values`, 'must be a non-empty array');
    if (d.labels !== undefined && (!Array.isArray(d.labels) || d.labels.length !== d.values.length)) {
      fail(`${field}.labels`, 'must label every value');
    }
    if (d.overrides !== undefined && d.overrides !== true) fail(`${field}.overrides`, 'must be true when present (build it with variants({...}))');
  } else {
    for (const k of ['low', 'high'] as const) {
      if (typeof d[k] !== 'number' || !Number.isFinite(d[k])) fail(`${field}.${k}`, 'must be a finite number');
    }
  }
  return d as unknown as Dimension;
}

export function parseSweep(value: unknown): SweepSpec {
  if (typeof value !== 'object' || value === null) fail('(root)', 'must be a sweep: export default sweep({...})');
  const s = value as Record<string, unknown>;
  if (s.kind !== 'sweep') fail('kind', `must be "sweep" (build it with sweep({...})), got ${JSON.stringify(s.kind)}`);
  if (typeof s.name !== 'string' || !s.name) fail('name', 'must be a non-empty string');
  try {
    parseExperiment(s.base);
  } catch (error) {
    if (error instanceof InvalidSpecError) fail(`base.${error.field}`, error.problem, error.valid);
    throw error;
  }
  if (typeof s.space !== 'object' || s.space === null) fail('space', 'must map spec paths to dimensions');
  for (const [path, dim] of Object.entries(s.space as Record<string, unknown>)) checkDimension(path, dim);
  if (!Array.isArray(s.seeds) || !s.seeds.length || !s.seeds.every((x) => Number.isInteger(x) && x >= 0)) {
    fail('seeds', 'must be a non-empty array of whole numbers >= 0');
  }
  if (!SWEEP_METRICS.includes(s.metric as (typeof SWEEP_METRICS)[number])) {
    fail('metric', `unknown metric ${JSON.stringify(s.metric)} (sweeps select on validation only)`, SWEEP_METRICS);
  }
  if (s.goal !== 'max' && s.goal !== 'min') fail('goal', `unknown goal ${JSON.stringify(s.goal)}`, ['max', 'min']);
  if (s.search !== 'grid' && s.search !== 'random') fail('search', `unknown search ${JSON.stringify(s.search)}`, ['grid', 'random']);
  if (!Number.isInteger(s.budget) || (s.budget as number) < 1) fail('budget', 'must be a whole number >= 1');
  if (!Number.isInteger(s.searchSeed)) fail('searchSeed', 'must be a whole number');
  return s as unknown as SweepSpec;
}

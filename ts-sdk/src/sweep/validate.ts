/**
 * Validation of a sweep definition, once, at its boundary: the `sweep()` builder, a file loaded by
 * the CLI (TS default export or JSON) and `runSweep` all go through `parseSweep`. Every error names
 * the field as the definition spells it (`space.schedule[0].lr.high`, `base.target.labelsPerClass`).
 */
import { parseExperiment } from '../dsl/validate.js';
import { describeValue, Fields } from '../fields.js';
import { LIMITS } from '../dsl/limits.js';
import { getPath } from './spec-path.js';
import { SEARCHES, SWEEP_METRICS, type SweepSpec } from './space.js';

/** Bounds on a definition's counts: a sweep must be a plan a machine can finish, not a typo. */
export const SWEEP_LIMITS = { seeds: 10_000, budget: 1_000_000, gridValues: 10_000, dimensions: 64 } as const;

const DIMENSION_KINDS = ['grid', 'uniform', 'logUniform', 'intUniform'] as const;
const DIMENSION_NAME = /^[A-Za-z0-9_.[\]-]{1,200}$/;

function checkPath(f: Fields, base: unknown, path: string): void {
  if (getPath(base, path) === undefined) f.fail('is not a field of the base experiment (paths look like schedule[0].regularizer.alpha)');
}

function checkDimension(f: Fields, key: string, value: unknown, base: unknown): void {
  const d = f.object(value);
  const kind = f.at('kind').oneOf(d.kind, DIMENSION_KINDS);
  if (kind === 'grid') {
    const values = f.at('values').array(d.values, { nonEmpty: true, maxLength: SWEEP_LIMITS.gridValues });
    if (d.labels !== undefined && (!Array.isArray(d.labels) || d.labels.length !== values.length)) {
      f.at('labels').fail('must label every value');
    }
    if (Array.isArray(d.labels)) d.labels.forEach((l, i) => f.at('labels').at(i).string(l, { maxLength: LIMITS.nameChars }));
    if (d.overrides !== undefined && d.overrides !== true) f.at('overrides').fail('must be true when present (build it with variants({...}))');
    if (d.overrides) {
      values.forEach((v, i) => {
        const where = new Fields(`${f.path}[${JSON.stringify((d.labels as string[] | undefined)?.[i] ?? i)}]`);
        const overrides = typeof v === 'object' && v !== null && !Array.isArray(v) ? v : where.fail('must map spec paths to values');
        for (const path of Object.keys(overrides)) checkPath(where.at(path), base, path);
      });
    } else {
      checkPath(f, base, key);
    }
    return;
  }
  checkPath(f, base, key);
  const low = f.at('low').number(d.low);
  const high = f.at('high').number(d.high);
  if (!(low <= high)) f.fail(`low ${low} is above high ${high}`);
  if (kind === 'logUniform' && !(low > 0)) f.fail('a log-uniform range must be positive');
  if (kind === 'intUniform' && !(Number.isInteger(low) && Number.isInteger(high))) f.fail('an integer range needs whole-number ends');
}

export function parseSweep(value: unknown): SweepSpec {
  const f = Fields.spec();
  if (typeof value !== 'object' || value === null || Array.isArray(value)) f.fail('must be a sweep: export default sweep({...})');
  const s = value as Record<string, unknown>;
  if (s.kind !== 'sweep') f.at('kind').fail(`must be "sweep" (build it with sweep({...})), got ${describeValue(s.kind)}`);
  f.onlyKeys(s, ['kind', 'name', 'base', 'space', 'seeds', 'metric', 'goal', 'search', 'budget', 'searchSeed']);
  f.at('name').string(s.name, { maxLength: 200 });
  const base = parseExperiment(s.base, 'base');
  const space = f.at('space').object(s.space);
  if (Object.keys(space).length > SWEEP_LIMITS.dimensions) f.at('space').fail(`must have at most ${SWEEP_LIMITS.dimensions} dimensions`);
  for (const [key, dim] of Object.entries(space)) {
    // A dimension's name is a spec path or a variant's name: it goes into tables, file names and reports as given.
    if (!DIMENSION_NAME.test(key)) f.at('space').at(key).fail('must be a spec path or a name of letters, digits and _ . - [ ] (at most 200)');
    checkDimension(f.at('space').at(key), key, dim, base);
  }
  f.at('seeds').array(s.seeds, { nonEmpty: true, maxLength: SWEEP_LIMITS.seeds }).forEach((seed, i) => f.at('seeds').at(i).count(seed, { allowZero: true }));
  if (new Set(s.seeds as number[]).size !== (s.seeds as number[]).length) f.at('seeds').fail('seeds repeat');
  const metricField = f.at('metric');
  if (!SWEEP_METRICS.includes(s.metric as (typeof SWEEP_METRICS)[number])) {
    metricField.fail(`unknown metric ${describeValue(s.metric)} (sweeps select on validation only)`, SWEEP_METRICS);
  }
  f.at('goal').oneOf(s.goal, ['max', 'min'] as const);
  const search = f.at('search').oneOf(s.search, SEARCHES);
  if (search === 'grid') {
    for (const [key, dim] of Object.entries(space)) {
      if ((dim as { kind: string }).kind !== 'grid') f.at('space').at(key).fail(`grid search needs grid dimensions, got ${(dim as { kind: string }).kind}`, ['grid']);
    }
  }
  f.at('budget').count(s.budget, { max: SWEEP_LIMITS.budget });
  f.at('searchSeed').count(s.searchSeed, { allowZero: true });
  return s as unknown as SweepSpec;
}

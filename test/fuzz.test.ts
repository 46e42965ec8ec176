// Property-based fuzzing of the SDK's entry points (fast-check): a valid experiment and a valid
// sweep mutated at a random place (a value of any JSON type, unicode and NUL text, numbers past
// every bound, a key removed, an unknown key added), whole random JSON, and random file text
// through the CLI's JSON loading. Invariants: a value is accepted, or refused with a FieldError
// naming a field and a message of bounded length; nothing else is thrown; an accepted spec converts
// to the contract's messages and encodes. The worker's side is python-worker/tests/test_fuzz.py.
// `make test` runs $AFA_FUZZ_EXAMPLES inputs per property (default 300); `make fuzz` many more.
import { expect } from 'chai';
import fc from 'fast-check';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FieldError, grid, parseExperiment, sweep, type ExperimentSpec } from '../ts-sdk/src/index.js';
import { parseSweep } from '../ts-sdk/src/sweep/validate.js';
import { loadSpecFile } from '../ts-sdk/src/cli/spec-file.js';
import { toCreateSessionRequest, toStageMessage } from '../ts-sdk/src/run/convert.js';
import { CreateSessionRequest, StageSpec } from '../ts-sdk/src/gen/afa/v1/afa.js';
import { tinyAfa } from './fixtures/specs.js';
import { tempDir } from './helpers.js';

const RUNS = Number(process.env.AFA_FUZZ_EXAMPLES ?? 300);
const SEED = process.env.AFA_FUZZ_RANDOM ? Date.now() : 20261201;
const tried: Record<string, number> = {};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every path into a JSON value (objects' keys and arrays' indices). */
function paths(value: unknown, at: (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== 'object') return [at];
  const keys: (string | number)[] = Array.isArray(value) ? value.map((_, i) => i) : Object.keys(value);
  return [at, ...keys.flatMap((k) => paths((value as Record<string | number, unknown>)[k], [...at, k]))];
}

const odd = fc.oneof(
  fc.jsonValue() as fc.Arbitrary<Json>,
  fc.constantFrom<Json>('', '\u0000', 'a\u0000b', '../../x', '<script>', '学'.repeat(300), 'x'.repeat(5000), -1, 0, 1e308, -1e308,
    2 ** 32, 2 ** 53, 1.5, 4097, 100_000_001, true, [], {}, null),
  fc.string({ unit: 'binary', maxLength: 30 }),
);

type Mutation = { kind: 'set'; path: number; value: Json } | { kind: 'delete'; path: number } | { kind: 'add'; path: number; key: string; value: Json };

const mutations = fc.array(fc.oneof(
  fc.record({ kind: fc.constant('set' as const), path: fc.nat(), value: odd }),
  fc.record({ kind: fc.constant('delete' as const), path: fc.nat() }),
  fc.record({ kind: fc.constant('add' as const), path: fc.nat(), key: fc.string({ maxLength: 12 }), value: odd }),
), { minLength: 1, maxLength: 3 });

function mutate(base: unknown, changes: Mutation[]): unknown {
  const value = JSON.parse(JSON.stringify(base)) as Json;
  let root: Json = value;
  for (const change of changes) {
    const all = paths(root);
    const path = all[change.path % all.length]!;
    if (path.length === 0) {
      if (change.kind === 'set') root = change.value;
      continue;
    }
    const parent = path.slice(0, -1).reduce<Json>((node, k) => (node as Record<string | number, Json>)[k]!, root) as Record<string | number, Json>;
    const key = path.at(-1)!;
    if (change.kind === 'set') parent[key] = change.value;
    else if (change.kind === 'delete') delete parent[key];
    else if (parent[key] !== null && typeof parent[key] === 'object' && !Array.isArray(parent[key])) (parent[key] as Record<string, Json>)[change.key] = change.value;
  }
  return root;
}

/** The invariant: accepted, or a FieldError naming a field in a bounded message. Anything else fails the property. */
function acceptedOrRefused(name: string, parse: () => unknown): unknown {
  tried[name] = (tried[name] ?? 0) + 1;
  try {
    return parse();
  } catch (error) {
    if (!(error instanceof FieldError)) throw new Error(`${name}: threw ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`);
    expect(error.field, error.message).to.be.a('string').and.not.equal('');
    expect(error.message.length, 'a refusal fits on a screen').to.be.below(5000);
    return undefined;
  }
}

/** An accepted spec becomes the messages the worker gets, and they encode. */
function converts(spec: ExperimentSpec): void {
  const request = toCreateSessionRequest({ backbone: spec.backbone, data: spec.target, seed: spec.seed, specJson: JSON.stringify(spec) });
  CreateSessionRequest.encode(request).finish();
  spec.schedule.forEach((s) => {
    if (s.kind === 'stage') StageSpec.encode(toStageMessage(s, spec.seed)).finish();
  });
}

describe('fuzzing the SDK\'s entry points (fast-check, no worker)', function () {
  this.timeout(600_000);
  const base = tinyAfa();
  const baseSweep = sweep({ name: 'fuzz', base, space: { 'schedule[0].regularizer.alpha': grid([1e-3, 1e-2]) }, seeds: [0, 1] });

  after(() => {
    if (process.env.AFA_FUZZ_REPORT) writeFileSync(process.env.AFA_FUZZ_REPORT, Object.entries(tried).map(([k, v]) => `${k} ${v}\n`).join(''), { flag: 'a' });
  });

  it('parseExperiment on a valid spec mutated anywhere: accepted (and it converts and encodes) or refused naming a field', () => {
    fc.assert(fc.property(mutations, (changes) => {
      const spec = acceptedOrRefused('parseExperiment', () => parseExperiment(mutate(base, changes))) as ExperimentSpec | undefined;
      if (spec) converts(spec);
    }), { numRuns: RUNS, seed: SEED });
  });

  it('parseExperiment on any JSON value: refused naming a field, never another exception', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
      acceptedOrRefused('parseExperiment(json)', () => parseExperiment(value));
    }), { numRuns: RUNS, seed: SEED });
  });

  it('parseSweep on a valid sweep mutated anywhere: accepted or refused naming a field', () => {
    fc.assert(fc.property(mutations, (changes) => {
      acceptedOrRefused('parseSweep', () => parseSweep(mutate(baseSweep, changes)));
    }), { numRuns: RUNS, seed: SEED });
  });

  it('the CLI\'s JSON loading on random text and on cut-off valid files: refused naming the file or a field', async () => {
    const dir = tempDir('afa-fuzz-');
    const text = JSON.stringify(base);
    await fc.assert(fc.asyncProperty(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.nat({ max: text.length }).map((n) => text.slice(0, n))),
      async (body) => {
        const file = join(dir, 'spec.json');
        writeFileSync(file, body);
        tried['loadSpecFile'] = (tried['loadSpecFile'] ?? 0) + 1;
        try {
          parseExperiment(await loadSpecFile(file));
        } catch (error) {
          if (!(error instanceof FieldError)) throw new Error(`loadSpecFile: threw ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`);
        }
      }), { numRuns: Math.min(RUNS, 200), seed: SEED });
  });
});

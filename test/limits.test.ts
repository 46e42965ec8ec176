// Every count and size a spec carries has an upper bound, checked by the SDK before anything is
// sent and by the worker again (python-worker/tests/test_limits.py): work that cannot be stopped or
// memory without bound must not start because a field said 2^32-1.
import { expect } from 'chai';
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidSpecError, LIMITS, parseExperiment, UsageError } from '../ts-sdk/src/index.js';
import { checkAttentionImages } from '../ts-sdk/src/run/session.js';
import { AFA_CLI, tempDir } from './helpers.js';
import { tinyAfa } from './fixtures/specs.js';

type Spec = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Where each bound applies in a spec (tinyAfa: stage 0 AST, 1 promote, 2 ACT; delta swapped in). */
const FIELDS: { [K in keyof typeof LIMITS]?: { path: string; set: (s: Spec, v: unknown) => void } } = {
  iterations: { path: 'schedule[0].iterations', set: (s, v) => (s.schedule[0].iterations = v) },
  batchSize: { path: 'schedule[0].batchSize', set: (s, v) => (s.schedule[0].batchSize = v) },
  hidden: { path: 'schedule[0].regularizer.hidden', set: (s, v) => (s.schedule[0].regularizer.hidden = v) },
  deltaHeadIterations: { path: 'schedule[0].regularizer.headIterations',
    set: (s, v) => (s.schedule[0].regularizer = { kind: 'delta', alpha: 0.1, headIterations: v }) },
  deltaAblationBatches: { path: 'schedule[0].regularizer.ablationBatches',
    set: (s, v) => (s.schedule[0].regularizer = { kind: 'delta', alpha: 0.1, ablationBatches: v }) },
  featureCacheMb: { path: 'schedule[0].featureCacheMb', set: (s, v) => (s.schedule[0].featureCacheMb = v) },
  width: { path: 'backbone.width', set: (s, v) => (s.backbone.width = v) },
  depth: { path: 'backbone.depth', set: (s, v) => (s.backbone.depth = v) },
  inChannels: { path: 'backbone.inChannels', set: (s, v) => (s.backbone.inChannels = v) },
  imageSize: { path: 'target.imageSize', set: (s, v) => (s.target.imageSize = v) },
  classes: { path: 'target.classes', set: (s, v) => (s.target.classes = Array.from({ length: Number(v) }, (_, i) => i)) },
  layers: { path: 'backbone.layers', set: (s, v) => (s.backbone.layers = Array.from({ length: Number(v) }, (_, i) => `layer${i}`)) },
  nameChars: { path: 'name', set: (s, v) => (s.name = 'n'.repeat(Number(v))) },
  pathChars: { path: 'target.directory', set: (s, v) => (s.target.directory = 'd'.repeat(Number(v))) },
};

function rejection(mutate: (s: Spec) => void): InvalidSpecError | undefined {
  const spec = JSON.parse(JSON.stringify(tinyAfa())) as Spec;
  mutate(spec);
  try {
    parseExperiment(spec);
    return undefined;
  } catch (error) {
    if (error instanceof InvalidSpecError) return error;
    throw error;
  }
}

describe('limits', () => {
  for (const [name, bound] of Object.entries(LIMITS)) {
    const field = FIELDS[name as keyof typeof LIMITS];
    if (!field) continue; // evalBatchSize: an Evaluate option, not a spec field
    it(`${field.path}: ${bound} is accepted, ${bound + 1} is refused naming the field`, () => {
      expect(rejection((s) => field.set(s, bound))).to.equal(undefined);
      const refused = rejection((s) => field.set(s, bound + 1));
      expect(refused?.field).to.match(new RegExp(`^${field.path.replace(/[[\].]/g, '\\$&')}`));
    });
  }

  it('every bound but the Evaluate batch, the attention images (run options) and the upload sizes applies to a spec field', () => {
    expect(Object.keys(LIMITS).filter((k) => !(k in FIELDS))).to.deep.equal(['evalBatchSize', 'attentionImages', 'weightsBytes', 'datasetBytes',
      'datasetImages']);
  });

  it(`attentionImages, a run option: ${LIMITS.attentionImages} is accepted, ${LIMITS.attentionImages + 1} refused naming it (SDK and CLI)`, async () => {
    expect(checkAttentionImages(LIMITS.attentionImages)).to.equal(LIMITS.attentionImages);
    expect(() => checkAttentionImages(LIMITS.attentionImages + 1)).to.throw(UsageError, /^attentionImages: must be a whole number in \[0, 16\]/);
    expect(() => checkAttentionImages(1.5)).to.throw(UsageError);
    const file = join(tempDir(), 'spec.json');
    writeFileSync(file, JSON.stringify(tinyAfa()));
    const cli = await execa(AFA_CLI[0], [...AFA_CLI[1], 'run', file, '--attention-images', '17'], { reject: false });
    expect(cli.exitCode).to.equal(2);
    expect(cli.stderr).to.match(/--attention-images: must be a whole number in \[0, 16\], got 17/);
  });

  it('counts without a bound of their own must fit uint32; floats must fit float32', () => {
    expect(rejection((s) => (s.target.labelsPerClass = 2 ** 32))?.message).to.match(/^target\.labelsPerClass: must be <= 4294967295/);
    expect(rejection((s) => (s.seed = 2 ** 32))?.field).to.equal('seed');
    expect(rejection((s) => (s.schedule[0].optimizer.lr = 1e308))?.message).to.match(/optimizer\.lr: must be at most 3\.403e\+38/);
    expect(rejection((s) => (s.schedule[0].regularizer.alpha = 1e39))?.field).to.equal('schedule[0].regularizer.alpha');
  });

  it('afa run on a JSON spec with 2^32 steps exits 2 naming the field', async () => {
    const file = join(tempDir(), 'huge.json');
    const spec = JSON.parse(JSON.stringify(tinyAfa())) as Spec;
    spec.schedule[0].iterations = 2 ** 32;
    writeFileSync(file, JSON.stringify(spec));
    const [node, args] = AFA_CLI;
    const result = await execa(node, [...args, 'run', file], { reject: false });
    expect(result.exitCode).to.equal(2);
    expect(result.stderr.trim()).to.equal('afa run: schedule[0].iterations: must be <= 100000000, got 4294967296');
  });
});

import { expect } from 'chai';
import { afa, afaChannel, afaSpatial, BACKBONE_NAMES, DATA_KINDS, PRECISIONS, REGULARIZER_KINDS, backbone, baseline, data, experiment, fromScratch, InvalidSpecError, l2sp, PAPER_ALPHAS, parseExperiment, pretrain, promoteTargetToSource, relative, specHash, stage, weights } from '../ts-sdk/src/index.js';
import { toStageMessage } from '../ts-sdk/src/proto.js';
import { contentHash } from '../ts-sdk/src/dsl/hash.js';
import { tinyAfa } from './fixtures/specs.js';

describe('DSL', () => {
  it('afa() is the paper\'s two stages with the promote step between them, at 0.01x the stability limit unless told', () => {
    const [first, promote, second] = afa();
    expect(first).to.include({ kind: 'stage', name: 'afa-spatial', iterations: 4500, batchSize: 64, headL2: 0.01, restoreBest: true });
    expect(first!.kind === 'stage' && first!.regularizer).to.deep.equal({ kind: 'afaSpatial', alpha: { relative: 0.01 }, hidden: undefined });
    expect(first!.kind === 'stage' && first!.optimizer).to.deep.include({ kind: 'sgd', lr: 0.01, momentum: 0.9 });
    expect(first!.kind === 'stage' && first!.lrSchedule).to.deep.equal({ kind: 'step', atFractions: [2 / 3], gamma: 0.1 });
    expect(promote).to.deep.equal({ kind: 'promoteTargetToSource' });
    expect(second!.kind === 'stage' && second!.regularizer).to.deep.equal({ kind: 'afaChannel', alpha: { relative: 0.01 }, hidden: undefined, uniformFloor: undefined });
    for (const make of [baseline.featureMap, baseline.delta, baseline.afaSpatial, baseline.afaChannel]) {
      const [only] = make({ iterations: 5 });
      expect(only!.kind === 'stage' && only!.regularizer).to.deep.include({ alpha: { relative: 0.01 } });
    }
    const [paper] = afa({ spatial: { alpha: PAPER_ALPHAS.resnet101.spatial } });
    expect(paper!.kind === 'stage' && paper!.regularizer).to.include({ alpha: 0.1 });
    expect(second!.kind === 'stage' && second!.optimizer).to.deep.include({ lr: 0.001 });
  });

  it('a written-out schedule equals the shorthand when given the same values', () => {
    const written = [
      stage({ name: 'afa-spatial', regularizer: afaSpatial({ alpha: 0.1 }), iterations: 100, lr: 0.01 }),
      promoteTargetToSource(),
      stage({ name: 'afa-channel', regularizer: afaChannel({ alpha: 0.01 }), iterations: 100, lr: 0.001 }),
    ];
    const shorthand = afa({ spatial: { alpha: 0.1, iterations: 100 }, channel: { alpha: 0.01, iterations: 100 } });
    // Specs are plain data: compared as they travel (JSON), every step and every field.
    expect(JSON.parse(JSON.stringify(written))).to.deep.equal(JSON.parse(JSON.stringify(shorthand)));
    expect([stage({ name: 'x', regularizer: l2sp({ alpha: 0.1 }), iterations: 100 })])
      .to.deep.equal(baseline.l2sp({ alpha: 0.1, iterations: 100, name: 'x' }));
  });

  it('a spec is plain data: JSON round trip, validation and a stable hash', () => {
    const spec = tinyAfa();
    const back = parseExperiment(JSON.parse(JSON.stringify(spec)));
    expect(back).to.deep.equal(JSON.parse(JSON.stringify(spec)));
    expect(specHash(back)).to.equal(specHash(spec));
    expect(specHash(spec)).to.match(/^[0-9a-f]{16}$/);
    // key order does not matter; values do
    expect(contentHash({ a: 1, b: [1, 2] })).to.equal(contentHash({ b: [1, 2], a: 1 }));
    expect(specHash(tinyAfa({ seed: 1 }))).to.not.equal(specHash(spec));
  });

  it('precision: auto is the default and is left out of the spec, so older specs keep their hash', () => {
    expect(tinyAfa({ precision: 'auto' })).to.not.have.property('precision');
    expect(specHash(tinyAfa({ precision: 'auto' }))).to.equal(specHash(tinyAfa()));
    expect(tinyAfa({ precision: 'bf16' }).precision).to.equal('bf16');
    expect(specHash(tinyAfa({ precision: 'fp32' }))).to.not.equal(specHash(tinyAfa()));
    const json = JSON.parse(JSON.stringify(tinyAfa())) as Record<string, unknown>;
    expect(parseExperiment({ ...json, precision: 'auto' })).to.deep.equal(json);
  });

  it('fills visible defaults', () => {
    const spec = tinyAfa();
    expect(spec).to.include({ version: 1, seed: 0, device: '', evaluateTest: true });
    const s = stage({ iterations: 200 });
    expect(s).to.include({ name: 'none', batchSize: 64, evalEvery: 20, logEvery: 4, headL2: 0.01 });
    expect(s.regularizer).to.deep.equal({ kind: 'none', weightDecay: 1e-4 });
    expect(pretrain({ data: data.fashionMnist() })).to.include({ iterations: 1500, batchSize: 128, lr: 0.05 });
  });

  const bad: Array<[string, (spec: Record<string, unknown>) => void, string, RegExp]> = [
    ['unknown backbone', (s) => ((s.backbone as Record<string, unknown>).name = 'resnet7'), 'backbone.name', new RegExp(`valid: ${BACKBONE_NAMES.join(', ')}`)],
    ['negative width', (s) => ((s.backbone as Record<string, unknown>).width = -1), 'backbone.width', /must be >= 1/],
    ['unknown data kind', (s) => ((s.target as Record<string, unknown>).kind = 'cifar'), 'target.kind', new RegExp(`valid: ${DATA_KINDS.join(', ')}`)],
    ['fractional labels per class', (s) => ((s.target as Record<string, unknown>).labelsPerClass = 2.5), 'target.labelsPerClass', /whole number/],
    ['unknown regulariser', (s) => (stageAt(s, 0).regularizer = { kind: 'dropout' }), 'schedule[0].regularizer.kind', new RegExp(`valid: ${REGULARIZER_KINDS.join(', ')}\\)`)],
    ['NaN alpha', (s) => (stageAt(s, 0).regularizer = { kind: 'afaSpatial', alpha: 'NaN' }), 'schedule[0].regularizer.alpha', /finite number/],
    ['negative alpha', (s) => (stageAt(s, 0).regularizer = { kind: 'l2sp', alpha: -0.1 }), 'schedule[0].regularizer.alpha', /must be >= 0/],
    ['zero iterations', (s) => (stageAt(s, 2).iterations = 0), 'schedule[2].iterations', /must be >= 1/],
    ['zero batch', (s) => (stageAt(s, 0).batchSize = 0), 'schedule[0].batchSize', /must be >= 1/],
    ['lr zero', (s) => ((stageAt(s, 0).optimizer as Record<string, unknown>).lr = 0), 'schedule[0].optimizer.lr', /must be > 0/],
    ['momentum 1', (s) => ((stageAt(s, 0).optimizer as Record<string, unknown>).momentum = 1), 'schedule[0].optimizer.momentum', /must be < 1/],
    ['attention lr multiplier 0', (s) => (stageAt(s, 2).attentionLrMultiplier = 0), 'schedule[2].attentionLrMultiplier', /must be > 0/],
    ['typo field', (s) => (stageAt(s, 0).iteration = 5), 'schedule[0].iteration', /is not a field here/],
    ['empty schedule', (s) => (s.schedule = []), 'schedule', /must not be empty/],
    ['unknown step kind', (s) => ((s.schedule as unknown[])[1] = { kind: 'promote' }), 'schedule[1].kind', /valid: stage, promoteTargetToSource/],
    ['wrong version', (s) => (s.version = 2), 'version', /unsupported spec version/],
    ['unknown precision', (s) => (s.precision = 'fp16'), 'precision', new RegExp(`valid: ${PRECISIONS.join(', ')}\\)`)],
    ['alignment without a source', (s) => (s.source = { kind: 'scratch' }), 'schedule[0].regularizer', /afaSpatial aligns to a source model/],
  ];

  function stageAt(spec: Record<string, unknown>, i: number): Record<string, unknown> {
    return (spec.schedule as Record<string, unknown>[])[i]!;
  }

  for (const [what, mutate, field, message] of bad) {
    it(`rejects ${what} naming ${field}`, () => {
      const spec = JSON.parse(JSON.stringify(tinyAfa())) as Record<string, unknown>;
      mutate(spec);
      try {
        parseExperiment(spec);
        expect.fail('must throw');
      } catch (error) {
        expect(error).to.be.instanceOf(InvalidSpecError);
        expect((error as InvalidSpecError).field).to.equal(field);
        expect((error as Error).message).to.match(message);
      }
    });
  }

  it('relative(x) travels as the stage\'s alphaRelative with the regulariser\'s alpha 0; an absolute alpha as before', () => {
    const [fm] = baseline.featureMap({ alpha: relative(0.3), iterations: 10 });
    const message = toStageMessage(fm as Parameters<typeof toStageMessage>[0], 0);
    expect(message.alphaRelative).to.equal(0.3);
    expect(message.regularizer?.kind).to.deep.equal({ $case: 'featureMap', value: { alpha: 0 } });
    const [act] = baseline.afaChannel({ alpha: 1e-3, iterations: 10 });
    const absolute = toStageMessage(act as Parameters<typeof toStageMessage>[0], 0);
    expect([absolute.alphaRelative, (absolute.regularizer?.kind?.value as { alpha: number }).alpha]).to.deep.equal([0, 1e-3]);
    const spec = experiment({ ...tinyAfa(), schedule: afa({ spatial: { alpha: relative(0.1) }, channel: { alpha: relative(0.5) } }) });
    expect(parseExperiment(JSON.parse(JSON.stringify(spec)))).to.deep.equal(JSON.parse(JSON.stringify(spec)));
  });

  it('the stability estimate runs where an alpha is relative, or where a stage asks for it; a relative alpha cannot turn it off', () => {
    const message = (s: unknown) => toStageMessage(s as Parameters<typeof toStageMessage>[0], 0).noStabilityEstimate;
    const [relativeFm] = baseline.featureMap({ alpha: relative(0.3), iterations: 10 });
    const [absoluteFm] = baseline.featureMap({ alpha: 1e-3, iterations: 10 });
    expect([message(relativeFm), message(absoluteFm), message({ ...absoluteFm!, stabilityEstimate: true }),
      message({ ...absoluteFm!, stabilityEstimate: false })]).to.deep.equal([false, true, false, true]);
    const spec = JSON.parse(JSON.stringify(tinyAfa()));
    spec.schedule[0].regularizer.alpha = { relative: 0.1 };
    spec.schedule[0].stabilityEstimate = false;
    expect(() => parseExperiment(spec)).to.throw(InvalidSpecError,
      /schedule\[0\]\.stabilityEstimate: cannot be false: a relative alpha \(regularizer\.alpha\.relative\) needs the stability estimate/);
    spec.schedule[0].stabilityEstimate = 'yes';
    expect(() => parseExperiment(spec)).to.throw(InvalidSpecError, /schedule\[0\]\.stabilityEstimate: must be true or false, got "yes"/);
  });

  for (const [bad, message] of [
    [{ relative: 0 }, /schedule\[0\]\.regularizer\.alpha\.relative: must be > 0/],
    [{ relative: 2000 }, /schedule\[0\]\.regularizer\.alpha\.relative: must be <= 1000/],
    [{ relative: 0.3, absolute: 1 }, /schedule\[0\]\.regularizer\.alpha\.absolute/],
  ] as const) {
    it(`a relative alpha ${JSON.stringify(bad)} is refused naming the field`, () => {
      const spec = JSON.parse(JSON.stringify(tinyAfa()));
      spec.schedule[0].regularizer.alpha = bad;
      expect(() => parseExperiment(spec)).to.throw(InvalidSpecError, message);
    });
  }

  it('ACT\'s uniform floor travels to the worker, and outside [0, 1] is refused naming the field', () => {
    const [act] = baseline.afaChannel({ alpha: relative(0.03), uniformFloor: 0.5, iterations: 10 });
    const message = toStageMessage(act as Parameters<typeof toStageMessage>[0], 0);
    expect(message.regularizer?.kind).to.deep.equal({ $case: 'afaChannel', value: { alpha: 0, hidden: 0, uniformFloor: 0.5 } });
    const [, , second] = afa({ channel: { alpha: 1e-3, uniformFloor: 0.25 } });
    expect(second!.kind === 'stage' && second!.regularizer).to.include({ kind: 'afaChannel', uniformFloor: 0.25 });
    for (const bad of [-0.1, 1.5]) {
      const spec = JSON.parse(JSON.stringify(experiment({ ...tinyAfa(), schedule: baseline.afaChannel({ alpha: 1e-3, iterations: 5 }) })));
      spec.schedule[0].regularizer.uniformFloor = bad;
      expect(() => parseExperiment(spec)).to.throw(InvalidSpecError, /schedule\[0\]\.regularizer\.uniformFloor: must be <= 1|schedule\[0\]\.regularizer\.uniformFloor: must be >= 0/);
    }
    const spatial = JSON.parse(JSON.stringify(tinyAfa()));
    spatial.schedule[0].regularizer.uniformFloor = 0.5; // AST has no floor
    expect(() => parseExperiment(spatial)).to.throw(InvalidSpecError, /schedule\[0\]\.regularizer.*uniformFloor/);
  });

  it('the builder validates too (values the type system cannot see)', () => {
    expect(() => experiment({
      name: 'x', backbone: backbone.smallResNet(), source: weights('/w.safetensors'), target: data.mnist(),
      schedule: afa({ spatial: { alpha: -1 } }),
    })).to.throw(InvalidSpecError, /schedule\[0\]\.regularizer\.alpha: must be >= 0/);
    expect(() => experiment({
      name: 'x', backbone: backbone.smallResNet(), source: fromScratch(), target: data.mnist(), schedule: baseline.fineTune(),
    })).to.not.throw();
  });
});

describe('head warm-up, a schedule element', () => {
  it('headWarmup trains the head alone (L2-FE) at lr 0.2 for 100 steps by default; withHeadWarmup puts it first', async () => {
    const { headWarmup, withHeadWarmup, baseline: b } = await import('../ts-sdk/src/index.js');
    const warm = headWarmup();
    expect([warm.name, warm.regularizer.kind, warm.iterations, warm.optimizer]).to.deep.equal(
      ['head-warmup', 'l2fe', 100, { kind: 'sgd', lr: 0.2, momentum: 0.9, weightDecay: 0, nesterov: false }]);
    const schedule = withHeadWarmup(b.fineTune({ iterations: 10 }), { iterations: 7, lr: 0.1 });
    expect(schedule.map((s) => (s.kind === 'stage' ? [s.name, s.iterations] : s.kind))).to.deep.equal([['head-warmup', 7], ['none', 10]]);
    expect(schedule[0]).to.include({ kind: 'stage' });
  });

  it("the study's head warm-up trials are the committed ones (same trial ids: its results stay resumable)", async () => {
    const { readFileSync } = await import('node:fs');
    const { investigationSweep, FULL } = await import('../studies/reproduce/study.js');
    const { planTrials } = await import('../ts-sdk/src/sweep/index.js');
    const committed = (JSON.parse(readFileSync('docs/reproduction/fashion-to-mnist-10-investigation/sweep.json', 'utf8')) as
      { trials: Array<{ trialId: string; labels: Record<string, string> }> }).trials.filter((t) => t.labels.variant?.startsWith('head warm-up'));
    expect(committed.length).to.be.greaterThan(0);
    const now = new Set(planTrials(investigationSweep(FULL)).map((t) => t.trialId));
    expect(committed.filter((t) => !now.has(t.trialId))).to.deep.equal([]);
  });
});

// End-to-end: tiny experiments on real data (Fashion-MNIST -> MNIST) through a real worker.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { CancelledError, data, NotFoundError, relative, SpecError, stage, afaSpatial, type RunEvent, type Worker } from '../ts-sdk/src/index.js';
import { startTestWorker, tempDir } from './helpers.js';
import { tinyAfa, tinyBackbone, tinyFineTune, tinySource, tinyTarget } from './fixtures/specs.js';

describe('experiment runner (real worker, real data)', () => {
  let worker: Worker;
  before(async () => {
    worker = await startTestWorker({ threads: 2 });
  });
  after(async () => {
    await worker.stop();
  });

  it('runs AFA\'s two stages, streams typed events and returns a typed result', async () => {
    const run = worker.run(tinyAfa());
    const events: RunEvent[] = [];
    for await (const event of run.events) events.push(event);
    const result = await run.result;

    const kinds = events.map((e) => e.type);
    const transferSession = events.findIndex((e) => e.type === 'session' && e.phase === 'transfer');
    expect(kinds.indexOf('source')).to.be.within(0, transferSession - 1);
    expect(kinds).to.include.members(['session', 'stage-start', 'step', 'eval', 'stage-end', 'promote', 'test', 'checkpoint']);
    expect(kinds.indexOf('promote')).to.be.greaterThan(kinds.indexOf('stage-end'));
    const session = events[transferSession] as Extract<RunEvent, { type: 'session' }>;
    // auto on CPU: fp32 training; the source's forward in bf16 only on CPUs with bf16 units
    expect(session.device).to.equal('cpu');
    expect(session.precision).to.be.oneOf(['fp32', 'fp32, source bf16']);
    const evals = events.filter((e): e is Extract<RunEvent, { type: 'eval' }> => e.type === 'eval' && e.phase === 'transfer');
    expect(evals.map((e) => `${e.stage}@${e.step}`)).to.deep.equal(['afa-spatial@3', 'afa-spatial@6', 'afa-channel@3', 'afa-channel@6']);

    expect(result.name).to.equal('tiny-afa');
    expect(result.specHash).to.match(/^[0-9a-f]{16}$/);
    expect(result.stages.map((s) => [s.name, s.regularizer, s.status, s.stepsCompleted])).to.deep.equal([
      ['afa-spatial', 'afa_spatial', 'completed', 6],
      ['afa-channel', 'afa_channel', 'completed', 6],
    ]);
    expect(result.stages[0]!.history.steps).to.have.length(3);
    expect(result.stages[0]!.history.evals).to.have.length(2);
    expect(result.stages[1]!.attention.map((a) => a.layer)).to.deep.equal(['layer1.0', 'layer2.0', 'layer3.0']);
    expect(result.bestValAccuracy).to.equal(result.stages[1]!.bestValAccuracy);
    expect(result.testAccuracy).to.be.within(0, 1);
    expect(existsSync(result.checkpointPath!)).to.equal(true);
    expect(existsSync(result.sourcePath!)).to.equal(true);
    expect(result.timings.totalSeconds).to.be.greaterThan(0);
  });

  it('the second run reuses the cached source and starts at transfer', async () => {
    const first = await worker.run(tinyFineTune()).result;
    const second = await worker.run(tinyFineTune(4)).result;
    expect(second.timings.sourceCached).to.equal(true);
    expect(second.sourcePath).to.equal(first.sourcePath);
  });

  it('precision fp32 reaches the worker, which reports it; the stage says how long delivery held it', async () => {
    const run = worker.run(tinyAfa({ precision: 'fp32' }), { checkpoint: false });
    const sessions: string[] = [];
    for await (const e of run.events) if (e.type === 'session') sessions.push(e.precision);
    const result = await run.result;
    // fp32 is part of the source's cache key: the source is pretrained again, in fp32 too
    expect(sessions).to.deep.equal(['fp32', 'fp32']);
    expect(result.timings.sourceCached).to.equal(false);
    for (const s of result.stages) expect(s.deliveryWaitSeconds).to.be.within(0, s.wallSeconds);
  });

  it('the same spec and seed give the same numbers', async () => {
    const a = await worker.run(tinyFineTune(), { checkpoint: false }).result;
    const b = await worker.run(tinyFineTune(), { checkpoint: false }).result;
    expect(a.stages[0]!.history.evals.map((e) => e.loss)).to.deep.equal(b.stages[0]!.history.evals.map((e) => e.loss));
    expect(a.testAccuracy).to.equal(b.testAccuracy);
  });

  it('an AbortSignal cancels mid-stage; the worker is idle and still serving afterwards', async () => {
    const controller = new AbortController();
    const long = tinyFineTune(100_000);
    const run = worker.run(long, { signal: controller.signal, checkpoint: false });
    let abortedAt = 0;
    let steps = 0;
    try {
      for await (const event of run.events) {
        if (event.type === 'step' && event.phase === 'transfer' && ++steps === 2) {
          abortedAt = performance.now();
          controller.abort(new Error('test abort'));
        }
      }
      expect.fail('the events must end with the cancellation');
    } catch (error) {
      expect(error).to.be.instanceOf(CancelledError);
    }
    try {
      await run.result;
      expect.fail('result must reject');
    } catch (error) {
      expect(error).to.be.instanceOf(CancelledError);
    }
    expect(performance.now() - abortedAt).to.be.below(5000);
    const info = await worker.info();
    expect(info.activeSessions).to.equal(0);
    const after = await worker.run(tinyFineTune(2), { checkpoint: false }).result;
    expect(after.stages[0]!.status).to.equal('completed');
  });

  it('drives a session stage by stage and branches between stages', async () => {
    const { path } = await worker.prepareSource(tinyBackbone, tinySource);
    await using session = await worker.createSession({ backbone: tinyBackbone, data: tinyTarget, sourceWeights: path, seed: 0 });
    expect(session.info.hasSource).to.equal(true);
    expect(session.info.layers.map((l) => l.name)).to.deep.equal(['layer1.0', 'layer2.0', 'layer3.0']);
    const first = await session.runStage(stage({ name: 'ast', regularizer: afaSpatial({ alpha: 1e-3 }), iterations: 4 })).result;
    const before = await session.evaluate('val');
    expect(before.accuracy).to.equal(first.finalValAccuracy);
    expect(first.status).to.equal('completed');
    expect(await session.promoteTargetToSource()).to.be.greaterThan(0);
    const saved = await session.saveCheckpoint(`${tempDir()}/model.safetensors`);
    expect(saved.sha256).to.have.length(64);
  });

  it('worker errors arrive typed: a wrong layer path lists the valid ones; a closed session is not found', async () => {
    try {
      await worker.createSession({ backbone: { ...tinyBackbone, layers: ['layer9'] }, data: data.mnist({ labelsPerClass: 2 }) });
      expect.fail('must throw');
    } catch (error) {
      expect(error).to.be.instanceOf(SpecError);
      expect((error as SpecError).field).to.equal('backbone.layers'); // as the caller wrote it, not the contract's `layers`
      expect((error as SpecError).message).to.match(/^backbone\.layers: 'layer9' is not a module of this backbone \(valid: /);
      expect((error as SpecError).valid).to.include('layer2.0.conv1');
    }
    const session = await worker.createSession({ backbone: tinyBackbone, data: data.mnist({ labelsPerClass: 2 }) });
    await session.close();
    try {
      await session.evaluate('val');
      expect.fail('must throw');
    } catch (error) {
      expect(error).to.be.instanceOf(NotFoundError);
    }
    expect((await worker.info()).activeSessions).to.equal(0);
  });

  it("the worker's refusals name the field as the spec spells it (target.labelsPerClass, schedule[0].regularizer.alpha.relative)", async () => {
    const tooMany = await worker.run({ ...tinyFineTune(), target: data.mnist({ labelsPerClass: 5000, valPerClass: 5 }) }, { checkpoint: false }).result
      .then(() => undefined, (e: unknown) => e);
    expect(tooMany).to.be.instanceOf(SpecError);
    expect((tooMany as SpecError).field).to.equal('target.labelsPerClass');
    expect((tooMany as SpecError).message).to.match(/^target\.labelsPerClass: 5000 exceeds the \d+ training images/);
    const adam = tinyFineTune();
    const relativeWithAdam = { ...adam, schedule: [stage({ name: 'ast', regularizer: afaSpatial({ alpha: relative(0.1) }), iterations: 2,
      optimizer: { kind: 'adam', lr: 1e-3, weightDecay: 0 } })] };
    const refused = await worker.run(relativeWithAdam, { checkpoint: false }).result.then(() => undefined, (e: unknown) => e);
    expect((refused as SpecError).field).to.equal('schedule[0].regularizer.alpha.relative');
    expect((refused as SpecError).valid).to.deep.equal(['sgd']);
  });
});

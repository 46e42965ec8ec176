/**
 * A schedule written out stage by stage, with a decision between stages: warm the new head up,
 * align with spatial attention, and continue with channel attention only when the spatial stage
 * improved validation accuracy (model selection on validation only; test is read once, at the end).
 *
 *   node_modules/.bin/tsx examples/custom-schedule.ts
 */
import { afaChannel, afaSpatial, backbone, data, l2fe, noRegularizer, pretrain, sgd, stage, Worker } from '../ts-sdk/src/index.js';
import { scaled } from './_scale.js';

const net = backbone.smallResNet({ width: scaled(16, 8) });
const source = pretrain({ data: data.fashionMnist({ testPerClass: 100 }), iterations: scaled(1500, 20), batchSize: 128 });

await using worker = await Worker.start();
const { path: sourceWeights, cached } = await worker.prepareSource(net, source);
console.log(`source: ${cached ? 'cached' : 'pretrained'} ${sourceWeights}`);

await using session = await worker.createSession({
  backbone: net,
  data: data.mnist({ labelsPerClass: 10, valPerClass: 10 }),
  sourceWeights,
  seed: 0,
});

async function run(spec: Parameters<typeof session.runStage>[0]) {
  const handle = session.runStage(spec);
  for await (const event of handle) {
    if (event.type === 'eval') console.log(`  ${event.stage} step ${event.step}: val ${(100 * event.accuracy).toFixed(1)}%`);
  }
  const result = await handle.result;
  console.log(`${result.name}: best val ${(100 * result.bestValAccuracy).toFixed(1)}% at step ${result.bestStep}`);
  return result;
}

const warmup = await run(stage({ name: 'head-warmup', regularizer: l2fe(), iterations: scaled(50, 4), optimizer: sgd({ lr: 0.05 }) }));
const spatial = await run(stage({ name: 'ast', regularizer: afaSpatial({ alpha: 3e-4 }), iterations: scaled(150, 6), lr: 0.01 }));

if (spatial.bestValAccuracy >= warmup.bestValAccuracy) {
  console.log('spatial alignment helped: promoting the target to source and aligning channels');
  await session.promoteTargetToSource();
  await run(stage({ name: 'act', regularizer: afaChannel({ alpha: 3e-3 }), iterations: scaled(150, 6), lr: 0.001 }));
} else {
  console.log('spatial alignment did not help: continuing with plain fine-tuning');
  await run(stage({ name: 'fine-tune', regularizer: noRegularizer(), iterations: scaled(150, 6), lr: 0.001 }));
}

const test = await session.evaluate('test');
console.log(`test accuracy of the selected model: ${(100 * test.accuracy).toFixed(1)}% on ${test.count} images`);

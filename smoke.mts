import { Worker, experiment, backbone, data, pretrain, afa } from './ts-sdk/src/index.js';
const spec = experiment({
  name: 'smoke',
  backbone: backbone.smallResNet({ width: 8 }),
  source: pretrain({ data: data.fashionMnist({ testPerClass: 10 }), iterations: 100, batchSize: 64 }),
  target: data.mnist({ labelsPerClass: 10, valPerClass: 10, testPerClass: 50 }),
  schedule: afa({ spatial: { alpha: 0.001, iterations: 40 }, channel: { alpha: 0.01, iterations: 40 } }),
});
await using worker = await Worker.start({ threads: 2 });
const run = worker.run(spec, { cacheDir: '/tmp/afa-cache2' });
const t0 = Date.now(); for await (const e of run.events) if (e.type !== 'step' && e.type !== 'eval') console.log(Date.now() - t0, JSON.stringify(e).slice(0, 150));
const r = await run.result;
console.log(r.testAccuracy, r.timings, r.checkpointPath);

/**
 * The demo (`make demo`): Fashion-MNIST source (pretrained once, then cached) -> MNIST with 10
 * labels per class, comparing plain fine-tuning, L2-SP, DELTA and AFA's two stages on one seed.
 * Model selection is on a validation split (10 images per class); test (2,000 held-out digits) is
 * read once per method at the end.
 *
 *   make demo            (or: node_modules/.bin/tsx examples/demo.ts)
 */
import { afa, backbone, baseline, data, experiment, pretrain, Worker, type ExperimentResult } from '../ts-sdk/src/index.js';
import { formatComparison, Progress } from '../ts-sdk/src/report/index.js';
import { scaled } from './_scale.js';

const T = scaled(300, 6); // transfer steps per method (AFA: T/2 per stage, as in the paper)

const base = {
  seed: 0,
  backbone: backbone.smallResNet({ width: scaled(16, 8) }),
  source: pretrain({ data: data.fashionMnist({ testPerClass: 100 }), iterations: scaled(1500, 20), batchSize: 128, lr: 0.05 }),
  target: data.mnist({ labelsPerClass: 10, valPerClass: 10 }),
};

// The reproduction study's settings for this task (docs/reproduction.md): every method at lr 0.05
// (the paper's 0.01 leaves 300 steps short of converged). DELTA and AFA at their default strength,
// 0.01x the stability limit the worker measures at each stage's start (DEFAULT_ALPHA: validation
// chose 0.01x-0.03x for every single-stage method on all three tasks of the cross-task study);
// L2-SP at the alpha the reproduction study chose. The paper's ImageNet alphas (AST 0.1, ACT 0.15)
// are 50-500x the limit here.
const lr = 0.05;
const methods = [
  experiment({ ...base, name: 'fine-tune', schedule: baseline.fineTune({ iterations: T, lr }) }),
  experiment({ ...base, name: 'L2-SP', schedule: baseline.l2sp({ alpha: 1e-3, iterations: T, lr }) }),
  experiment({ ...base, name: 'DELTA', schedule: baseline.delta({ iterations: T, lr }) }),
  experiment({
    ...base,
    name: 'AFA',
    schedule: afa({ spatial: { iterations: T / 2, lr }, channel: { iterations: T / 2, lr: lr / 10 } }),
  }),
];

const started = performance.now();
await using worker = await Worker.start();
const info = await worker.info();
console.error(`worker: torch ${info.torchVersion} on ${info.cudaAvailable ? 'CUDA' : `CPU (${info.cpuThreads} threads)`}`);

const results: ExperimentResult[] = [];
for (const spec of methods) {
  const progress = new Progress({ prefix: `[${spec.name}]` });
  const run = worker.run(spec);
  for await (const event of run.events) progress.handle(event);
  results.push(await run.result);
}

console.log(`\nFashion-MNIST -> MNIST, 10 labels per class, seed ${base.seed} (small ResNet, width ${base.backbone.width})\n`);
console.log(formatComparison(results));
const minutes = (performance.now() - started) / 60_000;
const cached = results[0]!.timings.sourceCached ? 'source cached' : `source pretrained in ${results[0]!.timings.pretrainSeconds.toFixed(0)}s`;
console.log(`\ntotal ${minutes.toFixed(1)} min (${cached}); selection on validation, test read once per method`);
// The headline of the regime map (docs/reproduction/regimes.md), so the table above is read as it should be.
console.log('\nWhat the studies found: one seed differs by a point or two either way. Over 600 runs (1-10 labels per class,\n' +
  'lr 0.02-0.2, 5 seeds, two tasks), no alignment method beats fine-tuning once each method picks its own lr on\n' +
  'validation; the gains seen at one shared lr are robustness to that lr. See docs/reproduction/regimes.md.');

/**
 * Embedding in a Node pipeline: consume the typed events as an AsyncIterable, cancel a run with
 * an AbortSignal, and use a finished run's result and checkpoint.
 *
 *   node_modules/.bin/tsx examples/pipeline.ts
 */
import { readFile } from 'node:fs/promises';
import { baseline, backbone, CancelledError, data, experiment, pretrain, Worker, type EvalPoint } from '../ts-sdk/src/index.js';
import { scaled } from './_scale.js';

const base = {
  backbone: backbone.smallResNet({ width: scaled(16, 8) }),
  source: pretrain({ data: data.fashionMnist({ testPerClass: 100 }), iterations: scaled(1500, 20), batchSize: 128 }),
  target: data.mnist({ labelsPerClass: 10, valPerClass: 10 }),
};

await using worker = await Worker.start();

// 1. A run we cancel from outside: here a guard stops it at the first evaluation below 50 %.
const guard = new AbortController();
const doomed = worker.run(experiment({ ...base, name: 'guarded', schedule: baseline.l2fe({ iterations: scaled(2000, 40), evalEvery: scaled(20, 4) }) }),
  { signal: guard.signal });
try {
  for await (const event of doomed.events) {
    if (event.type === 'eval' && event.accuracy < 0.5) {
      console.log(`guard: val ${(100 * event.accuracy).toFixed(1)}% at step ${event.step}, cancelling`);
      guard.abort(new Error('validation accuracy below the guard'));
    }
  }
  await doomed.result;
} catch (error) {
  if (!(error instanceof CancelledError)) throw error;
  console.log(`cancelled as asked: ${error.message}`);
}

// 2. A run to completion: collect the learning curve and use the checkpoint.
const curve: EvalPoint[] = [];
const run = worker.run(experiment({ ...base, name: 'fine-tune', schedule: baseline.fineTune({ iterations: scaled(300, 10) }) }));
for await (const event of run.events) if (event.type === 'eval') curve.push(event);
const result = await run.result;
console.log(`learning curve (val): ${curve.map((p) => (100 * p.accuracy).toFixed(0)).join(' ')}`);
console.log(`test ${(100 * (result.testAccuracy ?? 0)).toFixed(1)}%, checkpoint ${result.checkpointPath}`);
const sidecar = JSON.parse(await readFile(result.checkpointPath!.replace(/\.safetensors$/, '.json'), 'utf8')) as { sha256: string; num_classes: number };
console.log(`checkpoint metadata: ${sidecar.num_classes} classes, sha256 ${sidecar.sha256.slice(0, 12)}...`);

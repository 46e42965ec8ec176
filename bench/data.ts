/**
 * Data in, measured in one run on a folder of JPEGs of mixed sizes (3 classes):
 * - decoding throughput, one thread vs the worker's thread count (bench/python/decode_bench.py);
 * - CreateSession to the first training step on a worker that does not share this disk: cold (the
 *   folder packed, uploaded, decoded) vs warm (the node has the pack and the decoded arrays), with
 *   the worker's own phase timings;
 * - the cost of the paper's augmentation: a training step on random crops with flips (imageSize 72,
 *   crop 64) vs a step on images stored at 64 (the same input size to the network).
 */
import { execa } from 'execa';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { backbone, data, noRegularizer, stage, Worker, type DataSpec } from '../ts-sdk/src/index.js';
import { PythonProcess } from '../ts-sdk/src/worker/python-process.js';

const PYTHON = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');

/** `perClass` JPEGs per class and split, 180-300 px a side, random content tinted by class. */
async function jpegFolder(root: string, perClass: number): Promise<void> {
  let seed = 1;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (const split of ['train', 'test']) {
    for (const [c, name] of ['amber', 'azure', 'olive'].entries()) {
      mkdirSync(join(root, split, name), { recursive: true });
      for (let i = 0; i < (split === 'train' ? perClass : Math.ceil(perClass / 4)); i++) {
        const [w, h] = [180 + Math.floor(random() * 120), 180 + Math.floor(random() * 120)];
        const pixels = new Uint8Array(w * h * 3).map((_, k) => Math.floor(random() * 120) + (k % 3 === c ? 120 : 0));
        await sharp(pixels, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(root, split, name, `${i}.jpg`));
      }
    }
  }
}

async function toFirstStep(worker: Worker, target: DataSpec) {
  const started = performance.now();
  const session = await worker.createSession({ backbone: backbone.smallResNet({ width: 8 }), data: target, seed: 0 });
  const created = performance.now();
  const phases = session.info.phases.map((p) => ({ phase: p.phase, seconds: p.seconds, detail: p.detail }));
  let first = 0;
  for await (const e of session.runStage(stage({ regularizer: noRegularizer(), iterations: 2, logEvery: 1, evalEvery: 0, batchSize: 16 }))) {
    if (e.type === 'step') {
      first = performance.now();
      break;
    }
  }
  await session.close();
  return { createSeconds: (created - started) / 1000, toFirstStepSeconds: (first - started) / 1000, phases };
}

/** Seconds per training step (stage wall / steps), the quietest of `rounds` stages. */
async function stepSeconds(worker: Worker, target: DataSpec, steps: number, rounds: number): Promise<number[]> {
  const session = await worker.createSession({ backbone: backbone.smallResNet({ width: 16 }), data: target, seed: 0 });
  const out: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const result = await session.runStage(stage({ regularizer: noRegularizer(), iterations: steps, evalEvery: 0, batchSize: 32 })).result;
    out.push(result.wallSeconds / steps);
  }
  await session.close();
  return out;
}

export async function dataIn(threads: number, quick: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'afa-bench-data-'));
  const folder = join(dir, 'jpegs');
  await jpegFolder(folder, quick ? 40 : 200);
  const decode = JSON.parse((await execa(PYTHON, ['bench/python/decode_bench.py', folder, '128', String(threads), quick ? '1' : '3'])).stdout) as
    { images: number; imagesPerSecond: Record<string, number> };
  const served = await PythonProcess.start({ command: 'serve', args: ['--port', '0', '--exit-with-stdin', '--threads', String(threads)],
    env: { AFA_TOKEN: 'bench-data', AFA_CACHE: join(dir, 'node-cache') }, name: 'the benchmark worker', startTimeoutMs: 60_000 });
  const port = served.ready.detail?.$case === 'serve' ? served.ready.detail.value.port : 0;
  const previous = process.env.AFA_CACHE;
  process.env.AFA_CACHE = join(dir, 'sdk-cache'); // the SDK's pack cache, empty: the cold run packs
  try {
    const worker = await Worker.connect(`127.0.0.1:${port}`, { token: 'bench-data' });
    const target = data.imageFolder(folder, { imageSize: 128, color: 'rgb' });
    const cold = await toFirstStep(worker, target);
    const warm = await toFirstStep(worker, target);
    // Same input to the network (64 x 64); one side crops and flips per batch from 72 x 72.
    const rounds = quick ? 2 : 5;
    const steps = quick ? 5 : 20;
    const plain = await stepSeconds(worker, data.imageFolder(folder, { imageSize: 64, color: 'rgb' }), steps, rounds);
    const cropped = await stepSeconds(worker, data.imageFolder(folder, { imageSize: 72, crop: 64, color: 'rgb' }), steps, rounds);
    await worker.stop();
    const single = decode.imagesPerSecond['1']!;
    const parallel = decode.imagesPerSecond[String(threads)]!;
    return { images: decode.images, decodePerSecond: { single, parallel, speedup: parallel / single }, cold, warm,
      warmSpeedup: cold.toFirstStepSeconds / warm.toFirstStepSeconds, stepPlain: Math.min(...plain), stepCropped: Math.min(...cropped),
      cropCost: Math.min(...cropped) / Math.min(...plain) - 1 };
  } finally {
    if (previous === undefined) delete process.env.AFA_CACHE;
    else process.env.AFA_CACHE = previous;
    await served.stop(10_000);
  }
}

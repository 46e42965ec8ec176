// Data in, end to end with real workers and real images: an ImageFolder (RGB JPEG and PNG of mixed
// sizes, and Fashion-MNIST written out as PNGs) that exists only on the SDK's machine, uploaded by
// hash to a worker that cannot see it (a private mount namespace hides the folder), trains to the
// numbers of a worker reading the path; images from memory pack to the folder's hash; the decoded
// cache; a refused file named by its own path; one upload per node; sweep records carry the hash.
import { expect } from 'chai';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import sharp from 'sharp';
import { backbone, baseline, data, experiment, fromScratch, grid, sweep, SpecError, Worker, type DataSpec, type ExperimentResult, type RunEvent } from '../ts-sdk/src/index.js';
import { runSweep, planSlots } from '../ts-sdk/src/sweep/index.js';
import { encodePng } from '../ts-sdk/src/png.js';
import { serveByHand, startTestWorker, tempDir } from './helpers.js';

const PYTHON = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');

/** RGB images of three colour classes, of mixed sizes and aspect ratios, as JPEG and PNG files. */
async function colourFolder(root: string): Promise<void> {
  const colours = { blue: [30, 40, 200], green: [40, 190, 50], red: [210, 40, 30] } as const;
  for (const [split, n] of [['train', 8], ['val', 3], ['test', 4]] as const) {
    for (const [name, rgb] of Object.entries(colours)) {
      mkdirSync(join(root, split, name), { recursive: true });
      for (let i = 0; i < n; i++) {
        const w = 14 + 3 * i;
        const h = 30 - 2 * i;
        const pixels = new Uint8Array(w * h * 3).map((_, k) => Math.min(255, rgb[k % 3]! + ((k * 13 + i * 7) % 50)));
        const file = join(root, split, name, `${i}.${i % 2 ? 'png' : 'jpg'}`);
        if (i % 2) writeFileSync(file, encodePng(w, h, pixels, 3));
        else await sharp(pixels, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(file);
      }
    }
  }
}

/** Fashion-MNIST's first images of five classes, written out as grey PNGs (the IDX files of the Debian package). */
function fashionFolder(root: string): void {
  const idx = (name: string) => gunzipSync(readFileSync(`/usr/share/datasets/fashion-mnist/${name}.gz`));
  const images = idx('train-images-idx3-ubyte');
  const labels = idx('train-labels-idx1-ubyte');
  const names = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat'];
  const counts = new Map<number, number>();
  for (let i = 0; i < 2000 && [...counts.values()].reduce((a, b) => a + b, 0) < 5 * 24; i++) {
    const label = labels[8 + i]!;
    const k = counts.get(label) ?? 0;
    if (label >= 5 || k >= 24) continue;
    counts.set(label, k + 1);
    const split = k < 16 ? 'train' : 'test';
    mkdirSync(join(root, split, names[label]!), { recursive: true });
    writeFileSync(join(root, split, names[label]!, `${String(k).padStart(3, '0')}.png`), encodePng(28, 28, images.subarray(16 + i * 784, 16 + (i + 1) * 784), 1));
  }
}

/** A Python that cannot see `hidden`: a private mount namespace with a tmpfs over it. */
function blindPython(dir: string, hidden: string): string {
  const wrapper = join(dir, 'blind-python');
  const unshare = process.getuid?.() === 0 ? 'unshare -m' : 'unshare -rm';
  writeFileSync(wrapper, `#!/bin/sh\nexec ${unshare} -- sh -c 'mount -t tmpfs none "${hidden}" && exec "${PYTHON}" "$@"' sh "$@"\n`);
  chmodSync(wrapper, 0o755);
  return wrapper;
}

const tiny = (target: DataSpec, steps = 6) => experiment({
  name: 'data-in', backbone: backbone.smallResNet({ width: 4 }), source: fromScratch(), target,
  schedule: baseline.fineTune({ iterations: steps, evalEvery: 3, batchSize: 16 }),
});

/** The numbers a run is judged by: every validation point, the last training loss, test accuracy. */
const numbers = (r: ExperimentResult) => ({ evals: r.stages[0]!.history.evals.map((e) => [e.step, e.loss, e.accuracy]),
  train: r.stages[0]!.finalTrainLoss, test: r.testAccuracy });

describe('data in: images that exist only here, on a worker that cannot see them (real workers, real images)', function () {
  this.timeout(600_000);
  const dir = tempDir('afa-data-in-');
  const hidden = join(dir, 'data');
  const colours = join(hidden, 'colours');
  const fashion = join(hidden, 'fashion');
  let local: Worker;
  let remote: Worker;
  let remoteProcess: Awaited<ReturnType<typeof serveByHand>>;

  before(async () => {
    await colourFolder(colours);
    fashionFolder(fashion);
    local = await startTestWorker();
    remoteProcess = await serveByHand([], { AFA_TOKEN: 'data-in', AFA_CACHE: join(dir, 'remote-cache') }, blindPython(dir, hidden));
    remote = await Worker.connect(`127.0.0.1:${remoteProcess.port}`, { token: 'data-in' });
  });
  after(async () => {
    await local?.stop();
    await remote?.stop();
    await remoteProcess?.stop();
  });

  it('trains on an uploaded folder to the numbers of a worker that reads it by path: RGB JPEG/PNG of mixed sizes, and Fashion-MNIST PNGs', async () => {
    // The remote worker cannot read the folder by path: it is hidden from it.
    const byPath = await Worker.connect(`127.0.0.1:${remoteProcess.port}`, { token: 'data-in', sharedFilesystem: true });
    const blind = await byPath.run(tiny(data.imageFolder(colours, { imageSize: 20, crop: 16, color: 'rgb' })), { checkpoint: false }).result
      .then(() => undefined, (e: unknown) => e);
    expect((blind as SpecError).message).to.match(/does not exist on/);
    await byPath.stop();
    // The colour folder has a val split (two evaluations in six steps); the Fashion folder has none.
    for (const [target, evals] of [[data.imageFolder(colours, { imageSize: 20, crop: 16, color: 'rgb' }), 2], [data.imageFolder(fashion, { color: 'grayscale' }), 0]] as const) {
      const here = await local.run(tiny(target), { checkpoint: false }).result;
      const there = await remote.run(tiny(target), { checkpoint: false }).result;
      expect(there.dataSha256).to.match(/^[0-9a-f]{64}$/).and.to.equal(here.dataSha256);
      expect(numbers(there)).to.deep.equal(numbers(here));
      expect(numbers(here).evals).to.have.length(evals);
    }
  });

  it('images from memory pack to the hash of the same images in a folder, and train to the same numbers', async () => {
    const classNames = readdirSync(join(fashion, 'train')).sort();
    const split = (name: string) => classNames.flatMap((c, label) => readdirSync(join(fashion, name, c)).sort()
      .map((f) => ({ image: readFileSync(join(fashion, name, c, f)), label })));
    const inMemory = data.images({ train: split('train'), test: split('test'), classNames, color: 'grayscale' });
    const fromFolder = await local.run(tiny(data.imageFolder(fashion, { color: 'grayscale' })), { checkpoint: false }).result;
    expect(inMemory.sha256).to.equal(fromFolder.dataSha256);
    const memory = await remote.run(tiny(inMemory), { checkpoint: false }).result;
    expect(numbers(memory)).to.deep.equal(numbers(fromFolder));
    // Raw pixel arrays pack to the PNG files the same encoder writes.
    const raw = data.images({ train: [{ image: { pixels: new Uint8Array(28 * 28).fill(9), height: 28, width: 28, channels: 1 }, label: 0 }] });
    const png = data.images({ train: [{ image: encodePng(28, 28, new Uint8Array(28 * 28).fill(9), 1), label: 0 }] });
    expect(raw.sha256).to.equal(png.sha256);
  });

  it('the second session reads the decoded images from the node\'s cache; a changed file misses it', async () => {
    const folder = join(dir, 'cached');
    mkdirSync(folder);
    for (const split of ['train', 'test']) copyDir(join(fashion, split), join(folder, split));
    const decodes = async () => {
      const events: RunEvent[] = [];
      const run = local.run(tiny(data.imageFolder(folder, { color: 'grayscale' }), 1), { checkpoint: false });
      for await (const e of run.events) events.push(e);
      await run.result;
      return events.filter((e): e is Extract<RunEvent, { type: 'progress' }> => e.type === 'progress' && e.activity === 'data_decode' && e.finished);
    };
    const first = await decodes();
    expect(first.at(-1)!.detail).to.equal('');
    expect(first.at(-1)!.done).to.equal(5 * 24);
    expect((await decodes()).at(-1)!.detail).to.match(/^cache hit: /);
    const one = join(folder, 'train', 'coat', '000.png');
    writeFileSync(one, readFileSync(join(folder, 'train', 'coat', '001.png')));
    expect((await decodes()).at(-1)!.detail).to.equal('');
  });

  it('a file the worker refuses is named by its path in the folder, uploaded or not; skipBadFiles skips and counts it', async () => {
    const folder = join(dir, 'broken');
    copyDir(fashion, folder);
    writeFileSync(join(folder, 'train', 'dress', 'zz-broken.png'), 'not a png');
    for (const worker of [local, remote]) {
      const e = await worker.run(tiny(data.imageFolder(folder, { color: 'grayscale' })), { checkpoint: false }).result.then(() => undefined, (x: unknown) => x);
      expect(e).to.be.instanceOf(SpecError);
      expect((e as SpecError).message).to.match(/^target\.(root|sha256): 1 image does not decode .*train\/dress\/zz-broken\.png: not an image Pillow can decode/);
      expect((e as SpecError).message).to.include('(target.skipBadFiles skips it)'); // the option as the spec spells it
    }
    const run = remote.run(tiny(data.imageFolder(folder, { color: 'grayscale', skipBadFiles: true })), { checkpoint: false });
    let skipped = -1;
    for await (const e of run.events) if (e.type === 'session' && e.phase === 'transfer') skipped = e.badFilesSkipped;
    await run.result;
    expect(skipped).to.equal(1);
  });

  it('concurrent first runs of several clients on one node upload the data set once', async () => {
    const folder = join(dir, 'once');
    copyDir(fashion, folder);
    writeFileSync(join(folder, 'train', 'coat', 'extra.png'), readFileSync(join(fashion, 'train', 'coat', '000.png')));
    const clients = await Promise.all([1, 2, 3].map(() => Worker.connect(`127.0.0.1:${remoteProcess.port}`, { token: 'data-in' })));
    const results = await Promise.all(clients.map((c) => c.run(tiny(data.imageFolder(folder, { color: 'grayscale' }), 1), { checkpoint: false }).result));
    await Promise.all(clients.map((c) => c.stop()));
    const sha = results[0]!.dataSha256!;
    expect(results.every((r) => r.dataSha256 === sha)).to.equal(true);
    const log = remoteProcess.process.stderrTail(400);
    expect(log.split('\n').filter((l) => l.includes(`data set ${sha.slice(0, 12)}: stored`))).to.have.length(1);
  });

  it('every trial of a sweep on an image folder records the data set\'s hash', async () => {
    const s = sweep({ name: 'data-in', base: tiny(data.imageFolder(fashion, { color: 'grayscale' }), 1), space: { 'schedule[0].optimizer.lr': grid([0.01, 0.05]) } });
    const outcome = await runSweep(s, { outDir: join(dir, 'sweep'), slots: planSlots({ remote: [`127.0.0.1:${remoteProcess.port}`], token: 'data-in' }) });
    expect(outcome.records.map((r) => r.dataSha256)).to.deep.equal([outcome.records[0]!.dataSha256, outcome.records[0]!.dataSha256]);
    expect(outcome.records[0]!.dataSha256).to.match(/^[0-9a-f]{64}$/);
  });
});

function copyDir(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from, { withFileTypes: true })) {
    if (name.isDirectory()) copyDir(join(from, name.name), join(to, name.name));
    else copyFileSync(join(from, name.name), join(to, name.name));
  }
}

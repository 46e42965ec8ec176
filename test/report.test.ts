// Reports and TensorBoard files as a person meets them: a real run on real data through the CLI,
// the HTML laid out by headless Chromium at two widths (no text of a chart overlapping another, no
// broken image, no horizontal scroll), the event files read back by tensorboard's own reader.
import { expect } from 'chai';
import { execa } from 'execa';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AFA_CLI, tempDir } from './helpers.js';
import { tinyAfa, tinyFineTune } from './fixtures/specs.js';
import { findChromium, measureLayout } from './layout.js';
import { readPng } from './png.js';
import { grid, sweep, type ExperimentResult } from '../ts-sdk/src/index.js';
import { loadSweepDirectory } from '../ts-sdk/src/sweep/index.js';
import { bytesReviver, renderReport } from '../ts-sdk/src/report/index.js';
import type { TrialRecord } from '../ts-sdk/src/sweep/store.js';
import { encodeRgbPng } from '../ts-sdk/src/report/png.js';

const [node, cliArgs] = AFA_CLI;
const PYTHON = 'python-worker/.venv/bin/python';

function afa(args: string[], env: Record<string, string> = {}) {
  return execa(node, [...cliArgs, ...args], { reject: false, env });
}

/** Scalars and images of one run directory, read by tensorboard's EventAccumulator. */
async function readEvents(dir: string): Promise<{ scalars: Record<string, [number, number][]>; images: Record<string, [number, number, number][]> }> {
  const script = `
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0}); ea.Reload()
print(json.dumps({"scalars": {t: [[e.step, e.value] for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]},
                  "images": {t: [[e.step, e.width, e.height] for e in ea.Images(t)] for t in ea.Tags()["images"]}}))`;
  const result = await execa(PYTHON, ['-c', script, dir]);
  return JSON.parse(result.stdout) as Awaited<ReturnType<typeof readEvents>>;
}

describe('reports and TensorBoard (real worker, real data, headless Chromium)', function () {
  this.timeout(300_000);
  const chromium = findChromium();
  const dir = tempDir();
  const cache = tempDir('afa-cache-');
  const board = join(dir, 'tb');
  const html = join(dir, 'run.html');
  let result: ExperimentResult;

  before(async () => {
    const spec = join(dir, 'spec.json');
    writeFileSync(spec, JSON.stringify(tinyAfa()));
    const run = await afa(['run', spec, '--threads', '1', '--json', '--report', html, '--tensorboard', board], { AFA_CACHE: cache });
    expect(run.exitCode, run.stderr).to.equal(0);
    result = JSON.parse(run.stdout, bytesReviver) as ExperimentResult;
  });

  it('--tensorboard with a Python that cannot write event files fails before any training, saying why', async function () {
    // The system's python3 as a user might pass it: without torch (skipped where it has torch and tensorboard).
    if ((await execa('python3', ['-c', 'import torch.utils.tensorboard'], { reject: false })).exitCode === 0) this.skip();
    const spec = join(dir, 'spec.json');
    const run = await afa(['run', spec, '--threads', '1', '--tensorboard', join(dir, 'no-tb'), '--python', 'python3'], { AFA_CACHE: cache });
    expect(run.exitCode).to.equal(1);
    // Through the one door to Python: a Python without the worker's requirements is told the command that installs them.
    expect(run.stderr).to.match(/the TensorBoard writer's Python \(python3\) lacks the module \S+: run `npx afa worker setup`|install the tensorboard package/);
    expect(run.stderr).to.not.include('target:');
  });

  it('the result carries an attention snapshot per attentive stage; --json writes its bytes as base64', () => {
    const [spatial, channel] = result.stages.map((s) => s.attentionSnapshot!);
    expect(spatial.images).to.have.length(4);
    expect(spatial.images[0]!.pixels).to.be.instanceOf(Uint8Array).with.length(28 * 28);
    expect(spatial.layers.map((l) => [l.kind, l.spatial.length, l.spatial[0]!.length])).to.deep.equal(
      [['spatial', 4, 784], ['spatial', 4, 784], ['spatial', 4, 784]]);
    expect(channel.layers.map((l) => [l.kind, l.channel.length])).to.deep.equal([['channel', 8], ['channel', 16], ['channel', 32]]);
    for (const l of channel.layers) expect(l.channel.reduce((a, b) => a + b, 0)).to.be.closeTo(1, 1e-5);
    expect(result.stages[0]!.history.steps.every((p) => p.attention.length === 3)).to.equal(true);
  });

  it('afa run --report draws each layer\'s heat map over each image, the channel weights and the entropy over steps', async () => {
    const page = readFileSync(html, 'utf8');
    expect(page).to.include('data-heatmap="stage-0"');
    expect(page.match(/<img src="data:image\/png;base64,/g)).to.have.length(4 * (1 + 3));
    for (const layer of ['layer1.0', 'layer2.0', 'layer3.0']) expect(page).to.include(`data-chart="stage-1-channels-${layer}"`);
    expect(page).to.include('data-chart="stage-0-entropy"');
    expect(page).to.not.match(/(src|href)=["']?(https?:)?\/\//); // nothing fetched when opened
  });

  it('afa report on the run directory (its result.json) writes the same report', async () => {
    const runDir = join(cache, 'runs', result.specHash);
    expect(existsSync(join(runDir, 'result.json'))).to.equal(true);
    const out = join(dir, 'from-dir.html');
    const report = await afa(['report', runDir, '--out', out]);
    expect(report.exitCode, report.stderr).to.equal(0);
    expect(readFileSync(out, 'utf8')).to.equal(readFileSync(html, 'utf8'));
  });

  for (const width of [1400, 800]) {
    it(`the run report at ${width} px: no overlapping chart text, every image decodes, no horizontal scroll`, async function () {
      if (!chromium) this.skip();
      const layout = await measureLayout(html, width);
      expect(layout.overlaps).to.deep.equal([]);
      expect(layout.clipped).to.deep.equal([]);
      expect(layout.images).to.equal(16);
      expect(layout.brokenImages).to.equal(0);
      expect(layout.overflowX).to.equal(false);
    });
  }

  it('a heat-map PNG decodes to the pixels it was made from', () => {
    const rgb = Uint8Array.from({ length: 5 * 3 * 3 }, (_, i) => (i * 37) % 256);
    const file = join(dir, 'small.png');
    writeFileSync(file, encodeRgbPng(5, 3, rgb));
    const image = readPng(file);
    expect([image.width, image.height]).to.deep.equal([5, 3]);
    const back = [...image.rgba].filter((_, i) => i % 4 !== 3);
    expect(back).to.deep.equal([...rgb]);
  });

  it('--tensorboard writes event files tensorboard reads back: the run\'s numbers, entropy per layer, heat maps', async () => {
    expect(readdirSync(board)).to.deep.equal(['tiny-afa']);
    const { scalars, images } = await readEvents(join(board, 'tiny-afa'));
    // val accuracy on one step axis across stages: AST steps 3, 6, then ACT 6 + 3, 6 + 6
    const evals = result.stages.flatMap((s, i) => s.history.evals.map((e) => [i * 6 + e.step, e.accuracy]));
    expect(scalars['accuracy/val']!.map(([s, v]) => [s, Number(v.toFixed(5))])).to.deep.equal(evals.map(([s, v]) => [s, Number(v!.toFixed(5))]));
    expect(scalars['accuracy/test']![0]![1]).to.be.closeTo(result.testAccuracy!, 1e-6);
    const steps = result.stages[0]!.history.steps;
    expect(scalars['attention_entropy/layer2.0']!.slice(0, steps.length).map(([, v]) => v))
      .to.deep.equal(steps.map((p) => Math.fround(p.attention[1]!.entropy)));
    for (const tag of ['loss/train_total', 'loss/train_ce', 'regularizer/alpha_x_omega', 'lr', 'throughput/images_per_second', 'loss/val']) {
      expect(scalars, tag).to.have.property(tag);
    }
    expect(images['attention/afa-spatial/layer1.0']).to.deep.equal([[6, 4 * 28, 28]]);
  });

  it('afa run --tensorboard with a run named in 100 CJK characters (300 bytes) trains, writes its events and prints the result table', async () => {
    const spec = join(dir, 'cjk.json');
    const name = '学'.repeat(100);
    writeFileSync(spec, JSON.stringify({ ...tinyFineTune(), name }));
    const logdir = join(dir, 'tb-cjk');
    const run = await afa(['run', spec, '--threads', '1', '--tensorboard', logdir], { AFA_CACHE: cache });
    expect(run.exitCode, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^selected model: val \d+\.\d%, test \d+\.\d%$/m);
    const [folder] = readdirSync(logdir);
    expect(Buffer.byteLength(folder!)).to.be.at.most(200);
    expect((await readEvents(join(logdir, folder!))).scalars['accuracy/test']).to.have.length(1);
  });
});

describe('the sweep report on the committed reproduction sweeps (headless Chromium)', function () {
  this.timeout(120_000);
  // Each directory holding a results file, one level of grouping deep (docs/reproduction/recipes/<sweep>).
  const sweeps = readdirSync('docs/reproduction', { withFileTypes: true }).filter((d) => d.isDirectory()).flatMap((d) =>
    existsSync(join('docs/reproduction', d.name, 'results.jsonl')) ? [d.name]
      : readdirSync(join('docs/reproduction', d.name), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(d.name, e.name)));

  it('there are committed sweeps to check', () => expect(sweeps.length).to.be.at.least(4));

  for (const name of sweeps) {
    it(`${name}: sorted bars, paired differences to fine-tuning, one curve chart per configuration; no overlapping text at 1400 and 800 px`, async function () {
      if (!findChromium()) this.skip();
      const out = join(tempDir(), 'report.html');
      writeFileSync(out, renderReport(loadSweepDirectory(join('docs/reproduction', name)))); // `afa report` is run above
      const page = readFileSync(out, 'utf8');
      const records = readFileSync(join('docs/reproduction', name, 'results.jsonl'), 'utf8').trim().split('\n')
        .map((l) => JSON.parse(l) as { configId: string; labels: Record<string, string> });
      expect(page).to.include('data-chart="comparison"');
      // the paired chart needs fine-tuning in the same sweep (the cross-task study's attention sweeps pair with another)
      // (one swept dimension: with several, e.g. the regime map's labels x method, no single configuration is the reference)
      const hasFineTune = records.some((r) => Object.keys(r.labels).length === 1 && Object.values(r.labels).some((v) => v.startsWith('fine-tune')));
      expect(page.includes('data-chart="paired-difference"')).to.equal(hasFineTune);
      const configs = new Set(records.map((r) => r.configId));
      expect(page.match(/data-chart="curve-\d+"/g)).to.have.length(configs.size);
      for (const width of [1400, 800]) {
        const layout = await measureLayout(out, width);
        expect(layout.overlaps, `${width} px`).to.deep.equal([]);
        expect(layout.clipped, `${width} px`).to.deep.equal([]);
        expect(layout.overflowX, `${width} px`).to.equal(false);
      }
    });
  }
});

describe('the sweep report of a parameter the finished trials share', () => {
  it('draws no chart along a parameter with one value (every point on one x), and one for each parameter that varies', () => {
    const dir = tempDir();
    const from = 'docs/reproduction/regimes/regimes-fashion-to-mnist';
    writeFileSync(join(dir, 'sweep.json'), readFileSync(join(from, 'sweep.json')));
    const lines = readFileSync(join(from, 'results.jsonl'), 'utf8').trim().split('\n');
    const three = lines.filter((l) => (JSON.parse(l) as TrialRecord).values['target.labelsPerClass'] === 3);
    writeFileSync(join(dir, 'results.jsonl'), `${three.join('\n')}\n`);
    const page = renderReport(loadSweepDirectory(dir));
    expect(page).to.not.include('data-chart="param-target.labelsPerClass"');
    expect(page).to.include('data-chart="param-method"');
    writeFileSync(join(dir, 'results.jsonl'), `${lines.join('\n')}\n`); // 1, 3 and 10 labels per class
    expect(renderReport(loadSweepDirectory(dir))).to.include('data-chart="param-target.labelsPerClass"');
  });
});

describe('a sweep of an attentive method: per-trial runs, the attention gallery, TensorBoard per trial', function () {
  this.timeout(300_000);

  it('afa sweep --tensorboard writes one run directory per trial, and afa report shows each configuration\'s attention with a link to its run report', async () => {
    const dir = tempDir();
    const file = join(dir, 'sweep.json');
    writeFileSync(file, JSON.stringify(sweep({ name: 'ast-alpha', base: tinyAfa(), space: { 'schedule[0].regularizer.alpha': grid([1e-3, 1e-2]) }, seeds: [0] })));
    const out = join(dir, 'out');
    const board = join(dir, 'tb');
    const run = await afa(['sweep', file, '--threads', '1', '--out', out, '--tensorboard', board]);
    expect(run.exitCode, run.stderr).to.equal(0);
    expect(readdirSync(board).sort()).to.deep.equal(['alpha=0.001 seed=0', 'alpha=0.01 seed=0']);
    const { scalars } = await readEvents(join(board, 'alpha=0.01 seed=0'));
    const record = readFileSync(join(out, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TrialRecord)
      .find((r) => r.labels['schedule[0].regularizer.alpha'] === '0.01')!;
    expect(scalars['accuracy/val']!.map(([s, v]) => [s, Number(v.toFixed(5))]))
      .to.deep.equal(record.curve.map((p) => [p.globalStep, Number(p.accuracy.toFixed(5))]));

    const report = await afa(['report', out]);
    expect(report.exitCode, report.stderr).to.equal(0);
    const page = readFileSync(join(out, 'report.html'), 'utf8');
    const links = [...page.matchAll(/<a href="([^"]+)">seed 0<\/a>/g)].map((m) => m[1]!);
    expect(links).to.have.length(4); // 2 configurations x 2 attentive stages
    for (const link of new Set(links)) expect(readFileSync(join(out, link), 'utf8')).to.include('data-heatmap="stage-0"');
    if (findChromium()) {
      const layout = await measureLayout(join(out, 'report.html'), 800);
      expect(layout.overlaps).to.deep.equal([]);
      expect(layout.clipped).to.deep.equal([]);
      expect(layout.brokenImages).to.equal(0);
      expect(layout.images).to.equal(2 * 3); // AST: one map per layer per configuration
    }
  });
});

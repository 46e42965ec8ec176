// The report against hostile results files, as a browser meets it: every string a sweep's or a
// run's files carry (labels, stage, layer and class names, the sweep's name, workers) reaches the
// page as text, never as markup (Chromium's own DOM is checked); the page forbids all script by
// its policy, so even markup that got in would not run; fields of the wrong type are refused in one
// line naming them; a trial id that climbs out of the sweep writes nothing outside, and a run
// folder that is a link elsewhere is neither read nor written; a record missing a label is said.
import { expect } from 'chai';
import { execa } from 'execa';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AFA_CLI, tempDir } from './helpers.js';
import { dumpDom, findChromium } from './layout.js';
import { bytesReplacer } from '../ts-sdk/src/run/attention.js';
import type { TrialRecord } from '../ts-sdk/src/sweep/store.js';

const [node, cliArgs] = AFA_CLI;
const afa = (args: string[]) => execa(node, [...cliArgs, ...args], { reject: false });

const PAYLOADS = [
  '<img src=x onerror="document.title=\'pwned\'">',
  '"><svg onload=alert(1)>',
  '\'><script>document.title="pwned"</script>',
  '</title><script>alert(1)</script>',
  'javascript:alert(1)',
  '</pre><iframe srcdoc="<script>alert(1)</script>"></iframe>',
];
const payload = (i: number) => PAYLOADS[i % PAYLOADS.length]!;

const COMMITTED = 'docs/reproduction/fashion-to-mnist-10-investigation';

function readLines(dir: string): TrialRecord[] {
  return readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TrialRecord);
}

function writeLines(dir: string, records: unknown[]): void {
  writeFileSync(join(dir, 'results.jsonl'), `${records.map((r) => JSON.stringify(r)).join('\n')}\n`);
}

/** A run record with an attention snapshot (8x8 grey images, a spatial and a channel layer), payloads in every name. */
function hostileRun(): unknown {
  const pixels = () => new Uint8Array(64).map((_, i) => (i * 7) % 256);
  const stage = (i: number) => ({
    name: payload(i), regularizer: payload(i + 1), status: 'completed', iterations: 4, stepsCompleted: 4, bestValAccuracy: 0.5, bestStep: 2,
    finalValAccuracy: 0.5, finalValLoss: 1, finalTrainLoss: 1, wallSeconds: 1, deliveryWaitSeconds: 0, imagesPerSecond: 10, message: payload(i + 2),
    attention: [], featureCacheBytes: 0, phases: [],
    history: { steps: [1, 2, 3, 4].map((step) => ({ step, trainAccuracy: 0.5, ceLoss: 1, regLoss: 0.1, lr: 0.01,
      attention: [{ layer: payload(i + 3), entropy: 1, maxEntropy: 2 }] })), evals: [{ split: 'val', step: 2, accuracy: 0.5, loss: 1 }] },
    attentionSnapshot: { split: 'val', width: 8, height: 8, channels: 1,
      images: [{ label: 0, pixels: pixels() }, { label: 1, pixels: pixels() }],
      layers: [
        { layer: payload(i + 4), kind: 'spatial', mapHeight: 4, mapWidth: 4, entropy: 1, maxEntropy: 2, spatial: [pixels(), pixels()], channel: [],
          peakOverUniform: [2, 3], channelDiscrepancy: [] },
        { layer: payload(i + 5), kind: 'channel', mapHeight: 4, mapWidth: 4, entropy: 1, maxEntropy: 2, spatial: [], channel: [0.5, 0.25, 0.25],
          peakOverUniform: [1.5], channelDiscrepancy: [] },
      ] },
  });
  return {
    spec: { backbone: { name: payload(0) }, schedule: [] },
    result: { name: payload(1), specHash: payload(2).slice(0, 60), seed: 0, classNames: [payload(3), payload(4)], stages: [stage(0), stage(1)],
      bestValAccuracy: 0.5, testAccuracy: 0.5, testLoss: 1, timings: { totalSeconds: 1, pretrainSeconds: 0, transferSeconds: 1, sourceCached: true } },
  };
}

/** A copy of a committed sweep with payloads in its name, every label, stage name and worker, and one hostile run folder. */
function hostileSweep(): string {
  const dir = join(tempDir('afa-hostile-'), 'sweep');
  cpSync(COMMITTED, dir, { recursive: true });
  const file = join(dir, 'sweep.json');
  const body = JSON.parse(readFileSync(file, 'utf8')) as { sweep: { name: string } };
  body.sweep.name = payload(0);
  writeFileSync(file, JSON.stringify(body));
  const records = readLines(dir).map((r, i) => ({
    ...r, worker: payload(i), labels: Object.fromEntries(Object.keys(r.labels).map((k) => [k, `${payload(i)} ${r.labels[k]}`])),
    spec: { ...r.spec, schedule: r.spec.schedule.map((s, j) => (s.kind === 'promoteTargetToSource' ? s : { ...s, name: payload(i + j) })) },
  }));
  writeLines(dir, records);
  const first = records.find((r) => r.status === 'completed')!;
  mkdirSync(join(dir, 'runs', first.trialId), { recursive: true });
  writeFileSync(join(dir, 'runs', first.trialId, 'result.json'), JSON.stringify(hostileRun(), bytesReplacer));
  return dir;
}

describe('the report against hostile results files (headless Chromium)', function () {
  this.timeout(300_000);

  it('every string of the results files reaches the page as text: no script, no handler, no javascript: link in the DOM Chromium builds', async function () {
    if (!findChromium()) this.skip();
    const dir = hostileSweep();
    const run = await afa(['report', dir]);
    expect(run.exitCode, run.stderr).to.equal(0);
    const runDir = join(dir, 'runs', readdirSync(join(dir, 'runs'))[0]!);
    for (const page of [join(dir, 'report.html'), join(runDir, 'report.html')]) {
      const text = readFileSync(page, 'utf8');
      for (const p of PAYLOADS) expect(text, `${page} carries ${p} as text`).to.include(p.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;'));
      const dom = await dumpDom(page);
      expect(dom.match(/<script\b/gi), `${page}: script elements`).to.equal(null);
      expect(handlers(dom), `${page}: event handlers`).to.deep.equal([]);
      expect(dom.match(/<iframe\b/gi), `${page}: frames`).to.equal(null);
      expect(dom).to.not.match(/href="javascript:/i);
      expect(dom).to.match(/<title>[^<]*afa (sweep|run) report<\/title>/); // the title is ours, not the payload's
    }
  });

  it('the page\'s policy forbids script: markup injected past the escaping would still not run', async function () {
    if (!findChromium()) this.skip();
    const dir = hostileSweep();
    expect((await afa(['report', dir])).exitCode).to.equal(0);
    const page = join(dir, 'report.html');
    const text = readFileSync(page, 'utf8');
    expect(text).to.match(/<meta http-equiv="Content-Security-Policy" content="default-src &#39;none&#39;; script-src &#39;none&#39;;/);
    // What an escaping bug would let in: an inline script and a handler. Chromium runs neither.
    const broken = join(dir, 'broken.html');
    writeFileSync(broken, text.replace('</body>', '<script>document.title="ran"</script><img src="data:," onerror="document.title=\'ran\'"></body>'));
    const dom = await dumpDom(broken);
    expect(dom).to.not.match(/<title>ran<\/title>/);
    // Without the policy the same page does run it: the check above can fail.
    writeFileSync(broken, text.replace(/<meta http-equiv="Content-Security-Policy"[^>]*>/, '').replace('</body>', '<script>document.title="ran"</script></body>'));
    expect(await dumpDom(broken)).to.match(/<title>ran<\/title>/);
  });

  it('fields of the wrong type are refused in one line naming them: seeds, a space key, an image label, a map height', async () => {
    const cases: Array<[string, (dir: string) => void, RegExp]> = [
      ['seeds', (dir) => edit(join(dir, 'sweep.json'), (b) => { b.sweep.seeds = ['<script>alert(1)</script>']; }), /sweep\.seeds\[0\]: must be a finite number/],
      ['space key', (dir) => edit(join(dir, 'sweep.json'), (b) => { b.sweep.space = { '<img src=x onerror=alert(1)>': b.sweep.space.variant }; }),
        /sweep\.space\.<img src=x onerror=alert\(1\)>: must be a spec path or a name of letters/],
      ['search', (dir) => edit(join(dir, 'sweep.json'), (b) => { b.sweep.search = '<b>grid</b>'; }), /sweep\.search: unknown value "<b>grid<\/b>" \(valid: grid, random/],
    ];
    for (const [what, mutate, message] of cases) {
      const dir = hostileSweep();
      mutate(dir);
      const r = await afa(['report', dir]);
      expect(r.exitCode, `${what}: ${r.stderr}`).to.equal(2);
      expect(r.stderr.trim().split('\n'), what).to.have.length(1);
      expect(r.stderr, what).to.match(message);
      expect(existsSync(join(dir, 'report.html')), what).to.equal(false);
    }
    const runCases: Array<[string, (record: any) => void, RegExp]> = [ // eslint-disable-line @typescript-eslint/no-explicit-any
      ['label', (rec) => { rec.result.stages[0].attentionSnapshot.images[0].label = '<img src=x onerror=alert(1)>'; },
        /result\.stages\[0\]\.attentionSnapshot\.images\[0\]\.label: must be a finite number/],
      ['mapHeight', (rec) => { rec.result.stages[0].attentionSnapshot.layers[0].mapHeight = '<script>'; },
        /result\.stages\[0\]\.attentionSnapshot\.layers\[0\]\.mapHeight: must be a finite number/],
      ['layer', (rec) => { rec.result.stages[1].attentionSnapshot.layers[1].layer = { toString: 1 }; },
        /result\.stages\[1\]\.attentionSnapshot\.layers\[1\]\.layer: must be a string/],
    ];
    for (const [what, mutate, message] of runCases) {
      const dir = join(tempDir('afa-hostile-run-'), 'run');
      mkdirSync(dir);
      const record = JSON.parse(JSON.stringify(hostileRun(), bytesReplacer));
      mutate(record);
      writeFileSync(join(dir, 'result.json'), JSON.stringify(record));
      const r = await afa(['report', dir]);
      expect(r.exitCode, `${what}: ${r.stderr}`).to.equal(2);
      expect(r.stderr.trim().split('\n'), what).to.have.length(1);
      expect(r.stderr, what).to.match(message);
    }
  });

  it('a trial id that climbs out writes nothing outside the sweep; a run folder that links elsewhere is neither read nor written', async () => {
    const root = tempDir('afa-climb-');
    const dir = join(root, 'a', 'b', 'sweep');
    cpSync(COMMITTED, dir, { recursive: true });
    const records = readLines(dir);
    const climbing = { ...records[0]!, trialId: '../../x' };
    writeLines(dir, [climbing, ...records.slice(1)]);
    const elsewhere = join(root, 'elsewhere');
    mkdirSync(elsewhere);
    writeFileSync(join(elsewhere, 'result.json'), JSON.stringify(hostileRun(), bytesReplacer));
    mkdirSync(join(dir, 'runs'));
    symlinkSync(elsewhere, join(dir, 'runs', records[1]!.trialId));
    const r = await afa(['report', dir]);
    expect(r.exitCode, r.stderr).to.equal(0);
    expect(r.stderr).to.match(/^warning: results\.jsonl: skipped line 1\.trialId: must be a plain name/m);
    expect(existsSync(join(root, 'a', 'x')) || existsSync(join(root, 'x'))).to.equal(false);
    expect(readdirSync(elsewhere)).to.deep.equal(['result.json']); // no report.html written through the link
    expect(readFileSync(join(dir, 'report.html'), 'utf8')).to.not.include('/runs/');
  });

  it('a record without a label for one of the space\'s paths is skipped in one line, and the report is written', async () => {
    const dir = join(tempDir('afa-nolabel-'), 'sweep');
    cpSync(COMMITTED, dir, { recursive: true });
    const records = readLines(dir);
    writeLines(dir, [{ ...records[0]!, labels: {} }, ...records.slice(1)]);
    const r = await afa(['report', dir]);
    expect(r.exitCode, r.stderr).to.equal(0);
    expect(r.stderr.trim()).to.equal(`warning: results.jsonl: skipped trial ${records[0]!.trialId}: no label for the space's variant (its labels: none)`);
    expect(existsSync(join(dir, 'report.html'))).to.equal(true);
  });
});

/** Attributes named on* of any element of a serialised DOM (Chromium quotes every value with ", escaping " inside). */
function handlers(dom: string): string[] {
  const out: string[] = [];
  for (const tag of dom.matchAll(/<([a-zA-Z][-a-zA-Z0-9]*)((?:\s+[^\s"'>\/=]+(?:="[^"]*")?)*)\s*\/?>/g)) {
    for (const attr of tag[2]!.matchAll(/\s+([^\s"'>\/=]+)(?:="[^"]*")?/g)) if (/^on/i.test(attr[1]!)) out.push(`${tag[1]} ${attr[1]}`);
  }
  return out;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function edit(file: string, change: (body: any) => void): void {
  const body = JSON.parse(readFileSync(file, 'utf8'));
  change(body);
  writeFileSync(file, JSON.stringify(body));
}

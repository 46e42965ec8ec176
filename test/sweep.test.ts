import { expect } from 'chai';
import { execa } from 'execa';
import { existsSync, readFileSync, readdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { choice, fromScratch, baseline, grid, variants, logUniform, intUniform, sweep, uniform, InvalidSpecError, UsageError } from '../ts-sdk/src/index.js';
import { bestPerGroup, bestSpec, planTrials, summarize, loadSweepDirectory, formatSummaryTable, recordsToCsv, planSlots, runSweep, type SweepEvent, type TrialRecord } from '../ts-sdk/src/sweep/index.js';
import { MedianStoppingRule } from '../ts-sdk/src/sweep/early-stop.js';
import { readRecords } from '../ts-sdk/src/sweep/store.js';
import { AFA_CLI, processAlive, tempDir, waitUntil } from './helpers.js';
import { countColor, readPng } from './png.js';
import { PALETTE } from '../ts-sdk/src/report/svg.js';
import { tinyAfa, tinyFineTune } from './fixtures/specs.js';

const [node, cliArgs] = AFA_CLI;

function record(configId: string, seed: number, value: number, test: number, status: TrialRecord['status'] = 'completed'): TrialRecord {
  return {
    trialId: `t${configId.replace(/\W/g, '_')}-${seed}`, configId, values: { lr: Number(configId) }, labels: { lr: configId }, seed, status,
    metrics: { bestValAccuracy: value, finalValAccuracy: value, finalValLoss: 1 - value, testAccuracy: test },
    curve: [{ stage: 0, step: 10, globalStep: 10, accuracy: value, loss: 1 }], specHash: '', spec: tinyFineTune(),
    attempts: 1, worker: 'w', wallSeconds: 1, finishedAt: '',
  };
}

describe('sweep planning and results (no worker)', () => {
  it('grid search is the product of the dimensions times the seeds, each trial a valid spec', () => {
    const s = sweep({
      name: 's',
      base: tinyAfa(),
      space: { 'schedule[0].regularizer.alpha': grid([1e-4, 1e-3]), 'target.labelsPerClass': grid([5, 10, 20]) },
      seeds: [0, 1],
    });
    const trials = planTrials(s);
    expect(trials).to.have.length(12);
    expect(new Set(trials.map((t) => t.trialId)).size).to.equal(12);
    expect(new Set(trials.map((t) => t.configId)).size).to.equal(6);
    const t = trials.find((x) => x.values['target.labelsPerClass'] === 20 && x.seed === 1)!;
    expect(t.spec.target.labelsPerClass).to.equal(20);
    expect(t.spec.seed).to.equal(1);
    expect(t.labels).to.deep.equal({ 'schedule[0].regularizer.alpha': '1e-4', 'target.labelsPerClass': '20' });
  });

  it('random search draws `budget` configurations reproducibly from ranges and choices', () => {
    const s = sweep({
      name: 'r',
      base: tinyAfa(),
      space: { 'schedule[0].regularizer.alpha': logUniform(1e-5, 1e-2), 'schedule[0].optimizer.lr': uniform(0.001, 0.1),
        'schedule[2].regularizer': choice({ weak: { kind: 'afaChannel', alpha: 1e-3 }, strong: { kind: 'afaChannel', alpha: 1e-1 } }) },
      budget: 8,
      searchSeed: 7,
    });
    expect(s.search).to.equal('random');
    const a = planTrials(s);
    const b = planTrials(s);
    expect(a.map((t) => t.trialId)).to.deep.equal(b.map((t) => t.trialId));
    expect(a).to.have.length(8);
    for (const t of a) {
      const alpha = t.values['schedule[0].regularizer.alpha'] as number;
      expect(alpha).to.be.within(1e-5, 1e-2);
      expect(['weak', 'strong']).to.include(t.labels['schedule[2].regularizer']);
    }
    expect(planTrials({ ...s, searchSeed: 8 }).map((t) => t.trialId)).to.not.deep.equal(a.map((t) => t.trialId));
  });

  it('random draws over a choice are stratified: each value n/k times, give or take one; continuous draws as before', () => {
    const space = { 'schedule[0].optimizer.lr': uniform(0.001, 0.1), method: choice({ a: 1, b: 2, c: 3 }) };
    const s = sweep({ name: 'r', base: tinyAfa(), space: { 'schedule[0].optimizer.lr': space['schedule[0].optimizer.lr'],
      'schedule[0].regularizer.alpha': choice({ a: 1e-3, b: 1e-2, c: 1e-1 }) }, budget: 7, searchSeed: 3 });
    const labels = planTrials(s).map((t) => t.labels['schedule[0].regularizer.alpha']);
    const counts = ['a', 'b', 'c'].map((v) => labels.filter((l) => l === v).length);
    expect(Math.max(...counts) - Math.min(...counts)).to.be.at.most(1);
    // The lr of each draw is the one a sweep without the choice gets: the stream of continuous draws is unchanged.
    const alone = planTrials(sweep({ name: 'r', base: tinyAfa(), space: { 'schedule[0].optimizer.lr': space['schedule[0].optimizer.lr'],
      'schedule[0].batchSize': intUniform(8, 64) }, budget: 7, searchSeed: 3 }));
    expect(planTrials(s).map((t) => t.values['schedule[0].optimizer.lr'])).to.deep.equal(alone.map((t) => t.values['schedule[0].optimizer.lr']));
  });

  it('a bad path or a bad value fails before anything runs, naming the field', () => {
    expect(() => planTrials(sweep({ name: 'x', base: tinyAfa(), space: { 'schedule[0].regulariser.alpha': grid([1]) } })))
      .to.throw(InvalidSpecError, /space\.schedule\[0\]\.regulariser\.alpha: is not a field of the base experiment/);
    expect(() => planTrials(sweep({ name: 'x', base: tinyAfa(), space: { 'schedule[0].regularizer.alpha': grid([-1]) } })))
      .to.throw(InvalidSpecError, /trial\[alpha=-1, seed 0\]\.schedule\[0\]\.regularizer\.alpha: must be >= 0/);
  });

  it('variants set several fields together, each variant its own configuration, paths checked', () => {
    const s = sweep({
      name: 'v',
      base: tinyFineTune(),
      space: {
        method: variants({
          scratch: { source: fromScratch(), 'schedule[0].optimizer.lr': 0.1 },
          'L2-SP 0.01': { schedule: baseline.l2sp({ alpha: 0.01, iterations: 6 }) },
        }),
        'target.labelsPerClass': grid([5, 10]),
      },
      seeds: [0, 1],
    });
    const trials = planTrials(s);
    expect(trials).to.have.length(8);
    const scratch = trials.find((t) => t.labels.method === 'scratch' && t.values['target.labelsPerClass'] === 10)!;
    expect(scratch.spec.source.kind).to.equal('scratch');
    expect(scratch.spec.schedule[0]).to.deep.include({ kind: 'stage' });
    expect((scratch.spec.schedule[0] as { optimizer: { lr: number } }).optimizer.lr).to.equal(0.1);
    expect(scratch.spec.target.labelsPerClass).to.equal(10);
    const l2sp = trials.find((t) => t.labels.method === 'L2-SP 0.01')!;
    expect(l2sp.spec.source.kind).to.equal('pretrain');
    expect((l2sp.spec.schedule[0] as { regularizer: { kind: string } }).regularizer.kind).to.equal('l2sp');
    // The best configuration re-applies every field of its variant.
    const summary = { configId: scratch.configId, labels: scratch.labels, values: scratch.values } as Parameters<typeof bestSpec>[1];
    expect(bestSpec(s, summary).source.kind).to.equal('scratch');
    expect(() => planTrials(sweep({ name: 'x', base: tinyFineTune(), space: { method: variants({ bad: { 'schedule[0].regulariser': 1 } }) } })))
      .to.throw(InvalidSpecError, /space\.method\["bad"\]\.schedule\[0\]\.regulariser: is not a field of the base experiment/);
  });

  it('bestPerGroup picks each group\'s configuration with the best validation metric, in the order asked', () => {
    const records = [record('0.01', 0, 0.5, 0.4), record('0.1', 0, 0.8, 0.1), record('1', 0, 0.6, 0.9), record('10', 0, 0.7, 0.2)];
    const groupOf = (s: { configId: string }) => (Number(s.configId) < 1 ? 'small' : 'large');
    const picked = bestPerGroup(summarize(records, 'bestValAccuracy', 'max'), groupOf, ['large', 'small', 'absent']);
    expect(picked.map((p) => [p.group, p.best.configId, p.candidates.length])).to.deep.equal([['large', '10', 2], ['small', '0.1', 2]]);
  });

  it('the table folds seeds into mean ± std and sorts by the validation metric', () => {
    const records = [record('0.01', 0, 0.5, 0.4), record('0.01', 1, 0.7, 0.6), record('0.1', 0, 0.8, 0.1), record('0.1', 1, 0.0, 0, 'failed')];
    const [best, second] = summarize(records, 'bestValAccuracy', 'max');
    expect(best).to.include({ configId: '0.1', n: 1, failed: 1, metricMean: 0.8, metricStd: 0 });
    expect(second!.metricMean).to.be.closeTo(0.6, 1e-12);
    expect(second!.metricStd).to.be.closeTo(Math.sqrt(0.02), 1e-12);
    const table = formatSummaryTable([best!, second!], 'bestValAccuracy');
    expect(table.split('\n')[2]).to.match(/^\s*0\.1\s+80\.0 ± 0\.0\s+10\.0 ± 0\.0\s+1\s+0\s+1$/);
    expect(recordsToCsv(records).split('\n')[0]).to.equal(
      'trial_id,config_id,lr,seed,status,best_val_accuracy,final_val_accuracy,final_val_loss,test_accuracy,wall_seconds,attempts,worker,finished_at,error');
  });

  it('median stopping needs completed trials and a step past the warm-up, and stops a trial whose best so far is below their median', () => {
    const rule = new MedianStoppingRule({ minTrials: 3, warmupSteps: 10 });
    const at = (step: number, accuracy: number) => ({ stage: 0, step, globalStep: step, accuracy, loss: 1 });
    const [first, second] = planTrials(sweep({ name: 's', base: tinyFineTune(), space: {}, seeds: [0, 1] }));
    [0.5, 0.6].forEach((v, i) => rule.onTrialComplete(record('c', i, v, 0)));
    expect(rule.onTrialResult(first!, at(10, 0.0))).to.deep.equal({ action: 'continue' }); // two completed: too few
    rule.onTrialComplete(record('c', 2, 0.7, 0));
    rule.onTrialComplete(record('c', 3, 0.0, 0, 'failed')); // only completed curves count
    expect(rule.onTrialResult(second!, at(5, 0.0))).to.deep.equal({ action: 'continue' }); // inside the warm-up
    expect(rule.onTrialResult(second!, at(10, 0.55))).to.deep.equal({ action: 'stop',
      reason: 'best accuracy 0.550 so far is below the median 0.600 of 3 completed trials at step 10' });
    // Judged by its best so far, as Optuna's MedianPruner: a trial that was above the median is not stopped by one dip.
    expect(rule.onTrialResult(first!, at(10, 0.65))).to.deep.equal({ action: 'continue' });
    expect(rule.onTrialResult(first!, at(10, 0.1))).to.deep.equal({ action: 'continue' });
    expect(rule.onTrialResult(first!, at(20, 0.0))).to.deep.equal({ action: 'continue' }); // no completed trial at 20
  });

  it('a torn last line in the results file is skipped, not fatal', () => {
    const dir = tempDir();
    const path = join(dir, 'results.jsonl');
    writeFileSync(path, `${JSON.stringify(record('0.01', 0, 0.5, 0.4))}\n`);
    appendFileSync(path, '{"trialId": "half');
    const { records, tornLines } = readRecords(path);
    expect(records).to.have.length(1);
    expect(tornLines).to.equal(1);
  });
});

function sweepCli(args: string[], env: Record<string, string> = {}) {
  return execa(node, [...cliArgs, 'sweep', 'test/fixtures/tiny-sweep.ts', ...args], { reject: false, env });
}

function resultLines(dir: string): TrialRecord[] {
  return readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TrialRecord);
}

function findChromium(): string | undefined {
  return ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
}

describe('afa sweep (real workers, real data)', () => {
  let sweepDir = '';

  it('runs on 2 local workers; both serve trials; the table equals the results file', async () => {
    const out = tempDir();
    sweepDir = out;
    // A cache of its own: the source is pretrained here, and its progress is shown as `afa run` shows it.
    const result = await sweepCli(['--workers', '2', '--out', out], { AFA_CACHE: tempDir('afa-cache-') });
    expect(result.exitCode, result.stderr).to.equal(0);
    expect(result.stderr).to.match(/pretraining the source on \d+ images on cpu/);
    expect(result.stderr).to.match(/pretrain: 30 steps, regulariser none/);
    expect(result.stderr).to.match(/source: pretrained \//);
    const records = resultLines(out);
    expect(records).to.have.length(4);
    expect(new Set(records.map((r) => r.worker))).to.deep.equal(new Set(['local-1', 'local-2']));
    expect(records.every((r) => r.status === 'completed')).to.equal(true);

    const loaded = loadSweepDirectory(out);
    const expected = formatSummaryTable(summarize(loaded.records, 'bestValAccuracy', 'max'), 'bestValAccuracy');
    expect(result.stdout).to.include(expected);
    // the same table from the results command, and a CSV with one row per trial
    const table = await execa(node, [...cliArgs, 'results', out]);
    expect(table.stdout).to.include(expected);
    const csv = await execa(node, [...cliArgs, 'results', out, '--csv']);
    expect(csv.stdout.trim().split('\n')).to.have.length(5);
    // the best configuration is written as a runnable spec
    const best = JSON.parse(readFileSync(join(out, 'best.json'), 'utf8')) as { schedule: { optimizer: { lr: number } }[] };
    const top = summarize(loaded.records, 'bestValAccuracy', 'max')[0]!;
    expect(best.schedule[0]!.optimizer.lr).to.equal(top.values['schedule[0].optimizer.lr']);
  });

  it('afa report writes a self-contained HTML file whose charts render in headless Chromium', async function () {
    const chromium = findChromium();
    if (!chromium) this.skip();
    const report = await execa(node, [...cliArgs, 'report', sweepDir]);
    expect(report.exitCode).to.equal(0);
    const html = readFileSync(join(sweepDir, 'report.html'), 'utf8');
    expect(html.match(/<svg /g)?.length).to.be.at.least(3);
    expect(html).to.not.match(/(src|href)=["']?(https?:)?\/\//); // nothing fetched when opened
    for (const chart of ['comparison', 'param-schedule[0].optimizer.lr', 'curve-0', 'curve-1']) expect(html).to.include(`data-chart="${chart}"`);

    const png = join(tempDir(), 'report.png');
    const shot = await execa(chromium!, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${tempDir()}`,
      '--hide-scrollbars', '--window-size=1200,1900', `--screenshot=${png}`, `file://${join(sweepDir, 'report.html')}`], { reject: false, timeout: 60_000 });
    expect(existsSync(png), shot.stderr).to.equal(true);
    const image = readPng(png);
    expect(image.width).to.equal(1200);
    // The series colours are on the page: bars, points and lines were drawn, not an empty frame.
    expect(countColor(image, PALETTE[0]!)).to.be.greaterThan(800);
    const white = countColor(image, '#ffffff', 4);
    expect(white / (image.width * image.height)).to.be.below(0.97);
  });

  it('killed mid-way and rerun with --resume: no finished trial lost or rerun, the table complete', async () => {
    const out = tempDir();
    const env = { AFA_TEST_SWEEP_LRS: '0.01,0.02,0.05', AFA_TEST_SWEEP_SEEDS: '0,1', AFA_TEST_SWEEP_STEPS: '12' };
    const child = execa(node, [...cliArgs, 'sweep', 'test/fixtures/tiny-sweep.ts', '--workers', '1', '--threads', '1', '--out', out], { reject: false, env });
    const pids: number[] = [];
    await waitUntil(() => existsSync(join(out, 'results.jsonl')) && resultLines(out).length >= 2, 120_000, 100);
    pids.push(child.pid!);
    child.kill('SIGKILL');
    await child;
    const before = resultLines(out);
    expect(before.length).to.be.within(2, 5);
    expect(await waitUntil(() => pids.every((p) => !processAlive(p)), 5000)).to.equal(true);

    const again = await sweepCli(['--workers', '1', '--threads', '1', '--out', out, '--resume'], env);
    expect(again.exitCode, again.stderr).to.equal(0);
    expect(again.stderr).to.include(`${before.length} already done, ${6 - before.length} to run`);
    const after = resultLines(out);
    expect(after).to.have.length(6);
    expect(new Set(after.map((r) => r.trialId)).size).to.equal(6);
    // the records written before the kill are untouched
    expect(after.slice(0, before.length)).to.deep.equal(before);
    const summaries = summarize(loadSweepDirectory(out).records, 'bestValAccuracy', 'max');
    expect(summaries.map((s) => s.n)).to.deep.equal([2, 2, 2]);
  });

  it('a sweep at a non-auto precision pretrains its source once, under the key every trial reads', async () => {
    const cache = tempDir('afa-cache-');
    const saved = process.env.AFA_CACHE;
    process.env.AFA_CACHE = cache;
    try {
      const s = sweep({ name: 'fp32', base: { ...tinyFineTune(2), precision: 'fp32' }, space: { 'schedule[0].optimizer.lr': grid([0.01, 0.05]) },
        seeds: [0] });
      const events: SweepEvent[] = [];
      const outcome = await runSweep(s, { outDir: tempDir(), slots: planSlots({ local: 1, threads: 1 }), onEvent: (e) => events.push(e) });
      expect(outcome.records.map((r) => r.status)).to.deep.equal(['completed', 'completed']);
      const sources = readdirSync(join(cache, 'sources')).filter((f) => f.endsWith('.safetensors'));
      expect(sources, 'one pretrained source in the cache').to.have.length(1);
      expect(events.filter((e) => e.type === 'source')).to.deep.equal([{ type: 'source', cached: false, path: join(cache, 'sources', sources[0]!) }]);
    } finally {
      process.env.AFA_CACHE = saved;
    }
  });

  const tinyLrSweep = (lrs: number[]) => sweep({ name: 'lr', base: tinyFineTune(2), space: { 'schedule[0].optimizer.lr': grid(lrs) }, seeds: [0] });

  it('a record torn by a crash mid-append is cut off on resume, and every trial ends readable', async () => {
    const out = tempDir();
    const results = join(out, 'results.jsonl');
    await runSweep(tinyLrSweep([0.01, 0.05]), { outDir: out, slots: planSlots({ local: 1, threads: 1 }) });
    const text = readFileSync(results, 'utf8');
    writeFileSync(results, text.slice(0, text.length - Math.floor(text.split('\n')[1]!.length / 2))); // the crash
    expect(readRecords(results).tornLines).to.equal(1);
    const warnings: string[] = [];
    const outcome = await runSweep(tinyLrSweep([0.01, 0.05]), { outDir: out, slots: planSlots({ local: 1, threads: 1 }), resume: true,
      onEvent: (e) => e.type === 'warning' && warnings.push(e.message) });
    expect(warnings.join('\n')).to.match(/cut off a torn last line \(\d+ bytes/);
    expect(outcome.ran).to.equal(1);
    expect(readRecords(results)).to.deep.include({ tornLines: 0 });
    expect(readRecords(results).records.map((r) => r.labels['schedule[0].optimizer.lr'])).to.deep.equal(['0.01', '0.05']);
  });

  it('resuming a changed sweep definition says what changed; --force-new archives the old results', async () => {
    const out = tempDir();
    await runSweep(tinyLrSweep([0.01]), { outDir: out, slots: planSlots({ local: 1, threads: 1 }) });
    const changed = tinyLrSweep([0.02]);
    const refused = await runSweep(changed, { outDir: out, slots: planSlots({ local: 1, threads: 1 }), resume: true }).catch((e: unknown) => e);
    expect(refused).to.be.instanceOf(UsageError);
    expect((refused as UsageError).message).to.match(/holds results of a different sweep definition \(changed: space\.schedule\[0\]\.optimizer\.lr\)/);
    const outcome = await runSweep(changed, { outDir: out, slots: planSlots({ local: 1, threads: 1 }), resume: true, forceNew: true });
    expect(outcome.records.map((r) => r.labels['schedule[0].optimizer.lr'])).to.deep.equal(['0.02']);
    expect(readdirSync(out).filter((f) => /^results\..+\.jsonl$/.test(f))).to.have.length(1);
    // the report and the table read only this definition's trials
    expect(loadSweepDirectory(out).records.map((r) => r.labels['schedule[0].optimizer.lr'])).to.deep.equal(['0.02']);
  });

  it('refuses to overwrite results without --resume, with exit code 2', async () => {
    const out = tempDir();
    writeFileSync(join(out, 'results.jsonl'), `${JSON.stringify(record('0.01', 0, 0.5, 0.4))}\n`);
    const result = await sweepCli(['--out', out]);
    expect(result.exitCode).to.equal(2);
    expect(result.stderr).to.match(/outDir: .* already holds 1 trial results; resume that sweep \(--resume\)/);
  });

  it('median early stopping prunes a trial below the median of earlier trials at an eval point', async () => {
    const out = tempDir();
    // Three trials of the same sweep (other lrs), finished earlier, that reached 99 % at every eval
    // point of stage 0; only lr 0.01 is left to run. (The definition must match tiny-sweep's.)
    const env = { AFA_TEST_SWEEP_LRS: '0.02,0.03,0.04,0.01', AFA_TEST_SWEEP_SEEDS: '0', AFA_TEST_SWEEP_STEPS: '12' };
    const planned = planTrials(sweep({ name: 'tiny-sweep', base: tinyFineTune(12), space: { 'schedule[0].optimizer.lr': grid([0.02, 0.03, 0.04, 0.01]) },
      seeds: [0] }));
    const earlier = planned.slice(0, 3).map((t) => ({
      ...record(t.configId, 0, 0.99, 0.9),
      trialId: t.trialId, configId: t.configId, labels: t.labels, values: t.values, spec: t.spec, specHash: t.trialId,
      curve: [3, 6, 9, 12].map((step) => ({ stage: 0, step, globalStep: step, accuracy: 0.99, loss: 0.1 })),
    }));
    writeFileSync(join(out, 'results.jsonl'), earlier.map((r) => `${JSON.stringify(r)}\n`).join(''));
    const result = await sweepCli(['--workers', '1', '--threads', '1', '--out', out, '--early-stop', 'median', '--resume'], env);
    expect(result.exitCode, result.stderr).to.equal(0);
    const trial = resultLines(out).at(-1)!;
    expect(trial.status).to.equal('pruned');
    expect(trial.curve).to.have.length(1);
    expect(trial.error).to.match(/below the median 0\.990 of 3 completed trials at step 3/);
    expect(result.stderr).to.match(/pruned\s+\[lr=0\.01\] seed 0/);
  });
});

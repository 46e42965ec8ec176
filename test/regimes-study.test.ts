// The regime map's table logic on made-up records: what each protocol selects and pairs, the
// robustness figures, the drift reading and the verdicts. The runs themselves are in
// docs/reproduction/regimes/ (studies/regimes.ts).
import { expect } from 'chai';
import { planTrials, type TrialRecord } from '../ts-sdk/src/sweep/index.js';
import { cells, chosenLr, driftAgainstGain, driftOf, ownLr, paired, robustness, sharedLr, tCritical, verdicts, type RegimeTask } from '../studies/regimes/report.js';
import { label, LRS, regimeSweep, REGIME_TASKS, type MethodName } from '../studies/regimes/sweeps.js';
import type { TrialFacts } from '../studies/shared.js';

let id = 0;
function rec(method: MethodName, lr: number, labels: number, seed: number, val: number, test: number): TrialRecord {
  id += 1;
  return {
    trialId: `t${id}`, configId: `${method}|${lr}|${labels}`, values: {}, labels: { 'target.labelsPerClass': String(labels), method: label(method, lr) },
    seed, status: 'completed', metrics: { bestValAccuracy: val, finalValAccuracy: val, finalValLoss: 1, testAccuracy: test },
    curve: [], specHash: '', spec: {} as TrialRecord['spec'], attempts: 1, worker: 'w', wallSeconds: 1, finishedAt: '',
  };
}

const task = (records: TrialRecord[], facts: TrialFacts[] = []): RegimeTask =>
  ({ id: 'x', title: 'x', records, facts: new Map(facts.map((f) => [f.trialId, f])) });

/** Five seeds of a cell, val and test offset per seed. */
const seeds = (method: MethodName, lr: number, labels: number, val: number, test: number, spread = [0, 0.01, -0.01, 0.02, -0.02]) =>
  spread.map((d, seed) => rec(method, lr, labels, seed, val + d, test + d));

describe('the regime map (made-up records)', () => {
  it('plans 600 trials over both tasks, each measuring its drift', () => {
    const trials = REGIME_TASKS.flatMap((t) => planTrials(regimeSweep(t)));
    expect(trials).to.have.length(600);
    expect(trials.every((t) => t.spec.schedule.every((s) => s.kind !== 'stage' || s.measureDrift === true))).to.equal(true);
    expect(new Set(trials.map((t) => t.spec.target.labelsPerClass))).to.deep.equal(new Set([1, 3, 10]));
  });

  it('protocol (b) takes each method\'s lr with the best mean validation over seeds, not the best test, nor one lucky seed', () => {
    const records = [
      ...seeds('AFA', 0.05, 3, 0.70, 0.60),
      ...seeds('AFA', 0.1, 3, 0.65, 0.90), // the best test, a worse validation
      ...[0.99, 0.5, 0.5, 0.5, 0.5].map((v, s) => rec('AFA', 0.2, 3, s, v, 0.5)), // one lucky seed, mean 0.598
    ];
    expect(chosenLr(cells(task(records)), 'AFA', 3)).to.equal(0.05);
  });

  it('differences are paired by seed; a seed without its reference is left out; the interval decides gain, loss or noise', () => {
    const all = cells(task([
      ...[0.5, 0.6, 0.7].map((t, s) => rec('fine-tune', 0.1, 1, s, t, t)),
      ...[0.52, 0.62, 0.72, 0.99].map((t, s) => rec('DELTA', 0.1, 1, s, t, t)), // seed 3 has no fine-tuning: left out
    ]));
    const p = sharedLr(all, 'DELTA', 0.1, 1)!;
    expect(p.n).to.equal(3);
    expect(p.mean).to.be.closeTo(0.02, 1e-12);
    expect(p.std).to.be.closeTo(0, 1e-12);
    expect(p.verdict).to.equal('gain'); // the same +2 on every seed: a tiny spread, a clear gain
    const noisy = cells(task([...[0.5, 0.6, 0.7].map((t, s) => rec('fine-tune', 0.1, 1, s, t, t)),
      ...[0.55, 0.58, 0.73].map((t, s) => rec('DELTA', 0.1, 1, s, t, t))]));
    expect(paired(noisy.find((c) => c.method === 'DELTA'), noisy.find((c) => c.method === 'fine-tune'))!.verdict).to.equal('noise');
    expect(tCritical(5)).to.equal(2.776);
  });

  it('robustness: the spread over the lr grid, and the change from the chosen lr to twice it', () => {
    const all = cells(task(LRS.flatMap((lr, i) => seeds('fine-tune', lr, 10, [0.7, 0.8, 0.6, 0.5][i]!, [0.70, 0.80, 0.65, 0.40][i]!))));
    const r = robustness(all, 'fine-tune', 10);
    expect(r.lr).to.equal(0.05);
    expect(r.spread).to.be.closeTo(0.4, 1e-9); // 0.80 - 0.40
    expect(r.atDouble).to.be.closeTo(-0.15, 1e-9); // lr 0.1: 0.65 against 0.80 at 0.05
  });

  it('a gain only at a shared lr is robustness; one that survives each method\'s own lr is a gain', () => {
    const records = [
      // fine-tuning is best at lr 0.05 (val) and falls at 0.1; AFA holds up at 0.1 but is no better at its own best
      ...seeds('fine-tune', 0.05, 3, 0.80, 0.75), ...seeds('fine-tune', 0.1, 3, 0.70, 0.65),
      ...seeds('AFA', 0.05, 3, 0.80, 0.75), ...seeds('AFA', 0.1, 3, 0.79, 0.74),
      // DELTA is better at every lr, its own best too
      ...seeds('DELTA', 0.05, 3, 0.85, 0.80), ...seeds('DELTA', 0.1, 3, 0.75, 0.70),
    ];
    const t = task(records);
    const found = Object.fromEntries(verdicts(t).filter((v) => v.labels === 3).map((v) => [v.method, v.verdict]));
    expect(found.AFA).to.equal('robustness');
    expect(found.DELTA).to.equal('gain');
    expect(ownLr(cells(t), 'AFA', 3)).to.include({ lr: 0.05, referenceLr: 0.05 });
  });

  it('drift is read from the last stage that measured it; rho > 0 where the gain grows with fine-tuning\'s drift', () => {
    const records: TrialRecord[] = [];
    const facts: TrialFacts[] = [];
    LRS.forEach((lr, i) => {
      for (let seed = 0; seed < 3; seed++) {
        const ft = rec('fine-tune', lr, 1, seed, 0.5, 0.5);
        const afa = rec('AFA', lr, 1, seed, 0.5, 0.5 + 0.01 * i + 0.001 * seed); // the gain grows with lr ...
        records.push(ft, afa);
        facts.push({ trialId: ft.trialId, stages: [{ name: 'none', status: 'completed', drift: { weightRelative: 0.1 * (i + 1), featureRelative: 1 } }] });
        // ... and so does fine-tuning's drift; AFA's two stages: the last one's drift counts
        facts.push({ trialId: afa.trialId, stages: [{ name: 'a', status: 'completed', drift: { weightRelative: 9, featureRelative: 9 } },
          { name: 'b', status: 'completed', drift: { weightRelative: 0.05, featureRelative: 0.5 } }] });
      }
    });
    const t = task(records, facts);
    expect(driftOf(t, records[1]!)).to.deep.equal({ weight: 0.05, feature: 0.5 });
    const d = driftAgainstGain(t, cells(t), 'AFA');
    expect(d.cells).to.equal(4);
    expect(d.rho).to.be.closeTo(1, 1e-12);
  });
});

// The stability study's table (studies/stability.ts): what counts as blowing up, and the paired
// differences to fine-tuning, on records made up for the purpose (the study itself takes ~30 min).
import { expect } from 'chai';
import { stabilitySweep, stabilityTable, RATIOS, type TrialGrowth } from '../studies/stability.js';
import { planTrials, type TrialRecord } from '../ts-sdk/src/sweep/index.js';

function record(method: string, seed: number, test: number, best = 0.7, final = 0.7): TrialRecord {
  return { trialId: `${method}-${seed}`, configId: method, values: {}, labels: { method }, seed, specHash: '', spec: {} as TrialRecord['spec'],
    status: 'completed', curve: [], attempts: 1, worker: 'local-1', wallSeconds: 1, finishedAt: '',
    metrics: { bestValAccuracy: best, finalValAccuracy: final, finalValLoss: 1, testAccuracy: test } };
}

function growth(method: string, seed: number, ratio: number, first: number, status = 'completed'): TrialGrowth {
  return { trialId: `${method}-${seed}`, label: method, seed,
    stages: [{ stage: 'featureMap', alphaRatio: ratio, lambdaMax: 3e5, first, peak: 2 * first, peakStep: 42, last: first, status }] };
}

const row = (text: string, method: string, ratio: number) =>
  text.split('\n').find((l) => l.startsWith(`| ${method} | ${ratio} |`))?.split('|').map((c) => c.trim()) ?? [];

describe('the stability study', () => {
  it('plans the issue grid and further ratios for five methods, and fine-tuning as the reference', () => {
    const labels = [...new Set(planTrials(stabilitySweep([0, 1])).map((t) => t.labels.method))];
    expect(labels).to.have.length(1 + 5 * RATIOS.length);
    expect(RATIOS.slice(0, 5)).to.deep.equal([0.03, 0.1, 0.3, 0.7, 1.5]);
    expect(planTrials(stabilitySweep([0, 1]))).to.have.length(2 * labels.length);
  });

  it('a stage that diverged, a validation collapse, or an early alpha x Omega 10x higher per unit of ratio counts as blowing up; test differences are paired by seed', () => {
    const records = [record('fine-tune (reference)', 0, 0.70), record('fine-tune (reference)', 1, 0.60),
      record('feature-map x0.03', 0, 0.68), record('feature-map x0.03', 1, 0.62),
      record('feature-map x1.5', 0, 0.50), record('feature-map x1.5', 1, 0.50),
      record('feature-map x5', 0, 0.40, 0.7, 0.2), record('feature-map x5', 1, 0.40),
      record('feature-map x15', 0, 0.30), record('feature-map x15', 1, 0.30),
      record('feature-map x50', 0, 0.1), record('feature-map x50', 1, 0.1)];
    const g = [growth('feature-map x0.03', 0, 0.03, 0.03), growth('feature-map x0.03', 1, 0.03, 0.03),
      growth('feature-map x1.5', 0, 1.5, 1.0), growth('feature-map x1.5', 1, 1.5, 1.0), // 0.67 per unit of ratio vs 1.0: stable
      growth('feature-map x5', 0, 5, 4), growth('feature-map x5', 1, 5, 4),
      growth('feature-map x15', 0, 15, 200), growth('feature-map x15', 1, 15, 200), // 13.3 per ratio: 13x
      growth('feature-map x50', 0, 50, NaN, 'diverged'), growth('feature-map x50', 1, 50, 40)];
    const text = stabilityTable(records, g);
    expect(row(text, 'feature-map', 0.03)[6]).to.equal('0.0 ± 2.8'); // (-2, +2) points
    expect(row(text, 'feature-map', 1.5).at(-2)).to.equal('no');
    expect(row(text, 'feature-map', 1.5)[8]).to.equal('0.7');
    expect(row(text, 'feature-map', 5).at(-2)).to.equal('yes, 1 val collapsed');
    expect(row(text, 'feature-map', 15).at(-2)).to.equal('yes');
    expect(row(text, 'feature-map', 50).at(-2)).to.match(/^yes, 1 diverged/);
  });
});

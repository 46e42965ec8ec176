// The cross-task study's tables (studies/recipes.ts): the ratio chosen on validation, whether it
// transfers, paired differences, the channel attention against discrepancy, and what is read from a
// run record, on records made up for the purpose (the study itself takes ~95 min).
import { expect } from 'chai';
import {
  blowUpCell,
  channelRankCell,
  chosenRatio,
  paired,
  spearman,
  stageFacts,
  transfers,
  type TaskData,
  type TrialFacts,
} from '../studies/recipes/report.js';
import { OPTIONS, recipeSweep, SEEDS, TASKS_OF } from '../studies/recipes/sweeps.js';
import { parseExperiment } from '../ts-sdk/src/index.js';
import { planTrials, type TrialRecord } from '../ts-sdk/src/sweep/index.js';

function record(method: string, seed: number, test: number, val = 0.7, final = val): TrialRecord {
  return { trialId: `${method}-${seed}`, configId: method, values: {}, labels: { method }, seed, specHash: '', spec: {} as TrialRecord['spec'],
    status: 'completed', curve: [], attempts: 1, worker: 'local-1', wallSeconds: 1, finishedAt: '',
    metrics: { bestValAccuracy: val, finalValAccuracy: final, finalValLoss: 1, testAccuracy: test } };
}

const task = (records: TrialRecord[], facts: TrialFacts[] = []): TaskData =>
  ({ id: 't', title: 't', records, facts: new Map(facts.map((f) => [f.trialId, f])) });

describe('the cross-task study', () => {
  it('plans every option on all three tasks with five seeds, each spec valid', () => {
    for (const kind of ['baselines', 'attention', 'stage-ii'] as const) {
      for (const t of TASKS_OF[kind]) {
        const trials = planTrials(recipeSweep(kind, t, OPTIONS[kind]));
        expect(trials).to.have.length(SEEDS.length * Object.keys(OPTIONS[kind]).length);
        for (const trial of trials) parseExperiment(JSON.parse(JSON.stringify(trial.spec)));
      }
    }
    expect(SEEDS).to.have.length.of.at.least(5);
  });

  it('Spearman is Pearson on ranks, ties sharing their mean rank', () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).to.be.closeTo(1, 1e-12);
    expect(spearman([1, 2, 3, 4], [4, 3, 2, 1])).to.be.closeTo(-1, 1e-12);
    // ranks a = (0, 1.5, 1.5, 3), b = (0, 1, 2, 3): 4.5 / sqrt(4.5 * 5)
    expect(spearman([1, 5, 5, 9], [1, 2, 3, 4])).to.be.closeTo(4.5 / Math.sqrt(4.5 * 5), 1e-12);
  });

  it('chooses the ratio with the best mean validation over seeds, not the best test or one lucky seed', () => {
    const t = task([record('ACT x0.01', 0, 0.9, 0.70), record('ACT x0.01', 1, 0.9, 0.70),
      record('ACT x0.03', 0, 0.5, 0.80), record('ACT x0.03', 1, 0.5, 0.62), // mean 0.71
      record('ACT x0.1', 0, 0.5, 0.95), record('ACT x0.1', 1, 0.5, 0.40)]); // one lucky seed, mean 0.675
    expect(chosenRatio(t, 'ACT')).to.equal(0.03);
  });

  it('a ratio transfers when the same or an adjacent grid point is chosen on every task', () => {
    expect(transfers('ACT', [0.01, 0.03, 0.01])).to.equal(true);
    expect(transfers('ACT', [0.01, 0.1, 0.03])).to.equal(false);
    expect(transfers('ACT', [0.01, undefined, 0.01])).to.equal(false);
  });

  it('differences to fine-tuning are paired by seed, and a seed without its reference is left out', () => {
    const t = task([record('fine-tune (reference)', 0, 0.70), record('fine-tune (reference)', 1, 0.60),
      record('ACT x0.03', 0, 0.72), record('ACT x0.03', 1, 0.60), record('ACT x0.03', 2, 0.10)]);
    const d = paired(t, 'ACT x0.03')!;
    expect(d.n).to.equal(2);
    expect(d.mean).to.be.closeTo(0.01, 1e-12);
  });

  it('reads the stability estimate, the early and peak alpha x Omega and channel attention with discrepancy from a run record', () => {
    const facts = stageFacts('x', { stages: [
      { name: 'head-warmup', status: 'completed', history: { steps: [{ step: 3, regLoss: 0 }] } },
      { name: 'afaChannel', status: 'completed', stability: { alphaRatio: 0.3, lambdaMax: 3e5, alpha: 1e-5 },
        history: { steps: [{ step: 3, regLoss: NaN }, { step: 6, regLoss: 0.1 }, { step: 9, regLoss: 0.4 }, { step: 12, regLoss: 0.2 }] },
        attentionSnapshot: { layers: [{ layer: 'layer1.0', kind: 'channel', channel: [0.5, 0.5], channelDiscrepancy: [1, 2] }] } },
    ] });
    expect(facts.stages[0]).to.deep.equal({ name: 'head-warmup', status: 'completed' });
    expect(facts.stages[1]).to.deep.include({ alphaRatio: 0.3, first: 0.1, peak: 0.4, peakStep: 9 });
    expect(facts.stages[1]!.channels).to.deep.equal([{ layer: 'layer1.0', weight: [0.5, 0.5], discrepancy: [1, 2] }]);
  });

  it('the channel attention on the best-matching channels reads rho < 0 and percentile 0', () => {
    const channels = (weight: number[], discrepancy: number[]) => [{ layer: 'layer1.0', weight, discrepancy }];
    const t = task([record('ACT x0.03', 0, 0.7), record('ACT x0.03', 1, 0.7)], [
      { trialId: 'ACT x0.03-0', stages: [{ name: 'afaChannel', status: 'completed', channels: channels([0.7, 0.2, 0.1], [0.1, 0.5, 0.9]) }] },
      { trialId: 'ACT x0.03-1', stages: [{ name: 'afaChannel', status: 'completed', channels: channels([0.1, 0.2, 0.7], [0.9, 0.5, 0.1]) }] }]);
    expect(channelRankCell(t, 'ACT x0.03')).to.equal('-1.00 (0)');
    const opposite = task([record('ACT x0.3', 0, 0.7)], [
      { trialId: 'ACT x0.3-0', stages: [{ name: 'afaChannel', status: 'completed', channels: channels([0.1, 0.2, 0.7], [0.1, 0.5, 0.9]) }] }]);
    expect(channelRankCell(opposite, 'ACT x0.3')).to.equal('1.00 (100)');
  });

  it('blowing up: a diverged stage, a validation collapse, or an early term 10x higher per unit of ratio than at the smallest ratio', () => {
    const stage = (ratio: number, first: number, status = 'completed') => [{ name: 'featureMap', status, alphaRatio: ratio, first }];
    const records = [record('feature-map x0.01', 0, 0.7), record('feature-map x1.5', 0, 0.6), record('AFA x0.01', 0, 0.7),
      record('AFA x1.5', 0, 0.2, 0.7, 0.3), record('AST x0.01', 0, 0.7), record('AST x1.5', 0, 0.6)];
    const facts: TrialFacts[] = [
      { trialId: 'feature-map x0.01-0', stages: stage(0.01, 0.001) }, { trialId: 'feature-map x1.5-0', stages: stage(1.5, 0.1) }, // 0.67x
      { trialId: 'AFA x0.01-0', stages: stage(0.01, 0.001) }, { trialId: 'AFA x1.5-0', stages: stage(1.5, 0.1) },
      { trialId: 'AST x0.01-0', stages: stage(0.01, 0.001) }, { trialId: 'AST x1.5-0', stages: stage(1.5, 1.65) }]; // 11x
    const t = task(records, facts);
    expect(blowUpCell(t, 'feature-map x1.5', 'feature-map x0.01')).to.match(/^no \(step-3 term\/ratio 0\.7x/);
    expect(blowUpCell(t, 'AFA x1.5', 'AFA x0.01')).to.match(/^yes .*1 val collapsed/);
    expect(blowUpCell(t, 'AST x1.5', 'AST x0.01')).to.match(/^yes \(step-3 term\/ratio 11\.0x/);
  });
});

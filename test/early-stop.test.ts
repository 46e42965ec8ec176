// The median rule of planned sweeps against Optuna's MedianPruner itself: the same completed curves
// and the same running trials, decision for decision, for several settings of trials, warm-up and
// goal (Optuna run in the worker's Python; no worker needed).
import { expect } from 'chai';
import { execa } from 'execa';
import fc from 'fast-check';
import { join } from 'node:path';
import { MedianStoppingRule } from '../ts-sdk/src/sweep/early-stop.js';
import type { TrialRecord } from '../ts-sdk/src/sweep/store.js';

const PYTHON = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');

// Completed trials first (reported and told), then each running trial's points in order, asking
// should_prune after each; prints one decision per point.
const OPTUNA = `
import json, sys, optuna
optuna.logging.set_verbosity(optuna.logging.ERROR)
case = json.loads(sys.stdin.read())
out = []
for c in case["cases"]:
    study = optuna.create_study(direction=c["direction"], pruner=optuna.pruners.MedianPruner(
        n_startup_trials=c["minTrials"], n_warmup_steps=c["warmup"], n_min_trials=c["minAtStep"]))
    decisions = []
    for curve in c["completed"]:
        t = study.ask()
        for step, v in curve: t.report(v, step)
        study.tell(t, curve[-1][1])
    for curve in c["running"]:
        t = study.ask()
        pruned = False
        for step, v in curve:
            t.report(v, step)
            d = (not pruned) and t.should_prune()
            decisions.append(bool(d))
            pruned = pruned or d
        study.tell(t, state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE, values=None if pruned else curve[-1][1])
    out.append(decisions)
print(json.dumps(out))
`;

type Curve = [number, number][];
interface Case { direction: 'maximize' | 'minimize'; minTrials: number; warmup: number; minAtStep: number; completed: Curve[]; running: Curve[] }

const STEPS = [3, 6, 9, 12];
const curve = fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: STEPS.length })
  .map((vs) => vs.map((v, i) => [STEPS[i]!, v / 20] as [number, number]));
const cases = fc.record({
  direction: fc.constantFrom('maximize' as const, 'minimize' as const), minTrials: fc.integer({ min: 0, max: 4 }),
  warmup: fc.constantFrom(0, 3, 6, 10), minAtStep: fc.integer({ min: 1, max: 3 }),
  completed: fc.array(curve, { maxLength: 6 }), running: fc.array(curve, { minLength: 1, maxLength: 4 }),
});

/** The TS rule on the same case: completed records, then running trials (each finished as Optuna's is, so it counts for the next). */
function ours(c: Case): boolean[] {
  const value = c.direction === 'maximize' ? 'accuracy' : 'loss';
  const rule = new MedianStoppingRule({ minTrials: c.minTrials, warmupSteps: c.warmup, minTrialsAtStep: c.minAtStep,
    goal: c.direction === 'maximize' ? 'max' : 'min', value });
  const points = (cv: Curve) => cv.map(([step, v]) => ({ stage: 0, step, globalStep: step, accuracy: v, loss: v }));
  const done = (id: string, cv: Curve, status: TrialRecord['status']) =>
    rule.onTrialComplete({ trialId: id, status, curve: points(cv) } as unknown as TrialRecord);
  c.completed.forEach((cv, i) => done(`c${i}`, cv, 'completed'));
  return c.running.flatMap((cv, i) => {
    let pruned = false;
    const decisions = points(cv).map((p) => {
      const stop = !pruned && rule.onTrialResult({ trialId: `r${i}` }, p).action === 'stop';
      pruned ||= stop;
      return stop;
    });
    done(`r${i}`, cv, pruned ? 'pruned' : 'completed');
    return decisions;
  });
}

describe('the median rule is Optuna\'s MedianPruner (no worker)', function () {
  this.timeout(120_000);

  it('the same decision at every point of 200 generated sweeps: trials, warm-up, steps reported, goal', async () => {
    const sample = fc.sample(cases, { numRuns: 200, seed: 20261201 });
    const { stdout } = await execa(PYTHON, ['-c', OPTUNA], { input: JSON.stringify({ cases: sample }) });
    const theirs = JSON.parse(stdout) as boolean[][];
    let stops = 0;
    sample.forEach((c, i) => {
      expect(ours(c), JSON.stringify(c)).to.deep.equal(theirs[i]);
      stops += theirs[i]!.filter(Boolean).length;
    });
    expect(stops, 'the cases must include stops').to.be.greaterThan(20);
  });
});

/**
 * The median rule for planned sweeps (grid, random), decision for decision Optuna's MedianPruner
 * (test/early-stop.test.ts runs both on the same curves): at a validation point, a trial whose best
 * value so far is worse than the median of the completed trials' values at that same step is
 * stopped, once `minTrials` trials have completed and past `warmupSteps` steps; a step that fewer
 * than `minTrialsAtStep` completed trials reported decides nothing. Sweeps whose search an Optuna
 * study holds use Optuna's own MedianPruner.
 */
import { CONTINUE, type TrialDecision, type TrialScheduler } from './scheduler.js';
import type { CurvePoint, TrialRecord } from './store.js';
import type { TrialPlan } from './trials.js';

export interface MedianRuleOptions {
  /** Completed trials before the rule stops anything (Optuna's n_startup_trials). @default 3 */
  minTrials?: number;
  /** Steps (counted across stages) before which no trial is stopped (n_warmup_steps). @default 0 */
  warmupSteps?: number;
  /** Completed trials that must have reported a step for it to decide (n_min_trials). @default 1 */
  minTrialsAtStep?: number;
  /** Whether larger values are better. @default 'max' (accuracy) */
  goal?: 'max' | 'min';
  /** Which number of a validation point is judged. @default 'accuracy' */
  value?: 'accuracy' | 'loss';
}

export class MedianStoppingRule implements TrialScheduler {
  private readonly atStep = new Map<number, number[]>();
  private readonly best = new Map<string, number>();
  private completed = 0;
  readonly minTrials: number;
  readonly warmupSteps: number;
  readonly minTrialsAtStep: number;
  private readonly goal: 'max' | 'min';
  private readonly value: 'accuracy' | 'loss';

  constructor(options: MedianRuleOptions = {}) {
    this.minTrials = options.minTrials ?? 3;
    this.warmupSteps = options.warmupSteps ?? 0;
    this.minTrialsAtStep = options.minTrialsAtStep ?? 1;
    this.goal = options.goal ?? 'max';
    this.value = options.value ?? 'accuracy';
  }

  /** A finished trial's curve counts when it completed (a pruned curve would bias the median). */
  onTrialComplete(record: TrialRecord): void {
    this.best.delete(record.trialId);
    if (record.status !== 'completed') return;
    this.completed += 1;
    for (const p of record.curve) this.atStep.set(p.globalStep, [...(this.atStep.get(p.globalStep) ?? []), p[this.value]]);
  }

  /** The median of the completed trials at this step, when enough reported it. */
  median(step: number): number | undefined {
    const values = this.atStep.get(step);
    if (!values || values.length < this.minTrialsAtStep) return undefined;
    const sorted = [...values].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  }

  onTrialResult(trial: Pick<TrialPlan, 'trialId'>, point: CurvePoint): TrialDecision {
    const v = point[this.value];
    const before = this.best.get(trial.trialId);
    const best = before === undefined ? v : this.goal === 'max' ? Math.max(before, v) : Math.min(before, v);
    this.best.set(trial.trialId, best);
    if (this.completed === 0 || this.completed < this.minTrials || point.globalStep < this.warmupSteps) return CONTINUE;
    const median = this.median(point.globalStep);
    if (median === undefined || (this.goal === 'max' ? best >= median : best <= median)) return CONTINUE;
    return { action: 'stop', reason: `best ${this.value} ${best.toFixed(3)} so far is ${this.goal === 'max' ? 'below' : 'above'} the median ` +
      `${median.toFixed(3)} of ${this.atStep.get(point.globalStep)!.length} completed trials at step ${point.globalStep}` };
  }
}

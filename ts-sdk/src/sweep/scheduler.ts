/**
 * Trial schedulers decide, at each validation point of a running trial, whether it continues (as
 * Ray Tune's `TrialScheduler.on_trial_result` does). The sweep runner knows only this interface,
 * so a policy plugs in without touching it.
 */
import type { CurvePoint, TrialRecord } from './store.js';
import type { TrialPlan } from './trials.js';

export type TrialDecision = { readonly action: 'continue' } | { readonly action: 'stop'; readonly reason: string };

export interface TrialScheduler {
  /** A running trial reported a validation point: continue it, or stop it (recorded as pruned); an
   * answer from elsewhere (Optuna's pruner in the search process) comes as a promise. */
  onTrialResult(trial: TrialPlan, point: CurvePoint): TrialDecision | Promise<TrialDecision>;
  /** A trial ended, in this run or in an earlier one that is being resumed. */
  onTrialComplete(record: TrialRecord): void;
}

export const CONTINUE: TrialDecision = { action: 'continue' };

/** Runs every trial to its end. */
export class FifoScheduler implements TrialScheduler {
  onTrialResult(): TrialDecision {
    return CONTINUE;
  }

  onTrialComplete(): void {}
}

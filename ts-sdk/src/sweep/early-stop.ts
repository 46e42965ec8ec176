/**
 * Median stopping (as in Optuna's MedianPruner, Vizier and Ray Tune's MedianStoppingRule): a trial
 * whose validation accuracy at an eval point is below the median of earlier trials at the same
 * point is stopped.
 */
import { CONTINUE, type TrialDecision, type TrialScheduler } from './scheduler.js';
import type { CurvePoint, TrialRecord } from './store.js';

export class MedianStoppingRule implements TrialScheduler {
  private readonly seen = new Map<string, number[]>();

  constructor(
    /** Earlier trials needed at a point before it can stop anything. */
    readonly minTrials = 3,
  ) {}

  private static key(stage: number, step: number): string {
    return `${stage}:${step}`;
  }

  /** Adds a finished trial's curve (completed trials only: pruned curves would bias the median down). */
  onTrialComplete(record: TrialRecord): void {
    if (record.status !== 'completed') return;
    for (const p of record.curve) {
      const key = MedianStoppingRule.key(p.stage, p.step);
      this.seen.set(key, [...(this.seen.get(key) ?? []), p.accuracy]);
    }
  }

  /** The median of earlier trials at this point, when there are enough of them. */
  median(point: Pick<CurvePoint, 'stage' | 'step'>): number | undefined {
    const values = this.seen.get(MedianStoppingRule.key(point.stage, point.step));
    if (!values || values.length < this.minTrials) return undefined;
    const sorted = [...values].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  }

  onTrialResult(_trial: unknown, point: CurvePoint): TrialDecision {
    const median = this.median(point);
    if (median === undefined || point.accuracy >= median) return CONTINUE;
    return { action: 'stop',
      reason: `val ${point.accuracy.toFixed(3)} below the median ${median.toFixed(3)} at stage ${point.stage} step ${point.step}` };
  }
}

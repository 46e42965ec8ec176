/**
 * Median stopping (as in Optuna's MedianPruner and Vizier): a trial whose validation accuracy at an
 * eval point is below the median of earlier trials at the same point is stopped.
 */
import type { CurvePoint, TrialRecord } from './store.js';

export class MedianStopper {
  private readonly seen = new Map<string, number[]>();

  constructor(
    /** Earlier trials needed at a point before it can stop anything. */
    readonly minTrials = 3,
  ) {}

  private static key(stage: number, step: number): string {
    return `${stage}:${step}`;
  }

  /** Adds a finished trial's curve (completed trials only: pruned curves would bias the median down). */
  record(record: TrialRecord): void {
    if (record.status !== 'completed') return;
    for (const p of record.curve) {
      const key = MedianStopper.key(p.stage, p.step);
      const list = this.seen.get(key) ?? [];
      list.push(p.accuracy);
      this.seen.set(key, list);
    }
  }

  shouldStop(point: Pick<CurvePoint, 'stage' | 'step' | 'accuracy'>): { stop: boolean; median?: number } {
    const values = this.seen.get(MedianStopper.key(point.stage, point.step));
    if (!values || values.length < this.minTrials) return { stop: false };
    const sorted = [...values].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
    return { stop: point.accuracy < median, median };
  }
}

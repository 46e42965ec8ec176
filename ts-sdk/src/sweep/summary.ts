/** Sweep results grouped by configuration: seeds folded into mean ± std, sorted by the metric. */
import type { ExperimentSpec } from '../dsl/experiment.js';
import { formatTable } from '../table.js';
import type { SweepMetric, SweepSpec } from './space.js';
import type { TrialRecord } from './store.js';
import { applyValues, configLabel } from './trials.js';

export interface ConfigSummary {
  configId: string;
  labels: Record<string, string>;
  values: Record<string, unknown>;
  /** Completed trials (seeds) folded into the statistics. */
  n: number;
  pruned: number;
  failed: number;
  metricMean: number;
  metricStd: number;
  /** Test accuracy of the completed trials: reported, never used for selection. */
  testMean: number | null;
  testStd: number | null;
  seeds: number[];
}

export function meanStd(values: readonly number[]): { mean: number; std: number } {
  if (!values.length) return { mean: NaN, std: NaN };
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.length > 1 ? values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1) : 0;
  return { mean, std: Math.sqrt(variance) };
}

export function summarize(records: readonly TrialRecord[], metric: SweepMetric, goal: 'max' | 'min'): ConfigSummary[] {
  const groups = new Map<string, TrialRecord[]>();
  for (const r of records) groups.set(r.configId, [...(groups.get(r.configId) ?? []), r]);
  const summaries = [...groups.values()].map((group): ConfigSummary => {
    const completed = group.filter((r) => r.status === 'completed');
    const m = meanStd(completed.map((r) => r.metrics[metric]));
    const tests = completed.map((r) => r.metrics.testAccuracy).filter((t): t is number => t !== null);
    const t = meanStd(tests);
    return {
      configId: group[0]!.configId,
      labels: group[0]!.labels,
      values: group[0]!.values,
      n: completed.length,
      pruned: group.filter((r) => r.status === 'pruned').length,
      failed: group.filter((r) => r.status === 'failed').length,
      metricMean: m.mean,
      metricStd: m.std,
      testMean: tests.length ? t.mean : null,
      testStd: tests.length ? t.std : null,
      seeds: completed.map((r) => r.seed).sort((a, b) => a - b),
    };
  });
  const sign = goal === 'max' ? -1 : 1;
  return summaries.sort((a, b) => {
    if (Number.isNaN(a.metricMean)) return 1;
    if (Number.isNaN(b.metricMean)) return -1;
    return sign * (a.metricMean - b.metricMean);
  });
}

/**
 * The best configuration of each group (for example each method, whose alpha grid is one variants
 * dimension), chosen on the sweep's validation metric; groups keep the order they first appear in
 * `order`, or the ranking's order without it.
 */
export function bestPerGroup(summaries: readonly ConfigSummary[], groupOf: (s: ConfigSummary) => string,
  order?: readonly string[]): { group: string; best: ConfigSummary; candidates: ConfigSummary[] }[] {
  const groups = new Map<string, ConfigSummary[]>();
  for (const s of summaries) {
    if (s.n === 0) continue;
    const g = groupOf(s);
    groups.set(g, [...(groups.get(g) ?? []), s]);
  }
  const names = order ? order.filter((g) => groups.has(g)) : [...groups.keys()];
  // `summaries` is already ranked by the metric, so each group's first entry is its best.
  return names.map((group) => ({ group, best: groups.get(group)![0]!, candidates: groups.get(group)! }));
}

const fmt = (mean: number | null, std: number | null, percent: boolean) => {
  if (mean === null || Number.isNaN(mean)) return '-';
  const scale = percent ? 100 : 1;
  return `${(scale * mean).toFixed(percent ? 1 : 3)} ± ${(scale * (std ?? 0)).toFixed(percent ? 1 : 3)}`;
};

export function formatSummaryTable(summaries: readonly ConfigSummary[], metric: SweepMetric): string {
  const paths = [...new Set(summaries.flatMap((s) => Object.keys(s.labels)))];
  const percent = metric !== 'finalValLoss';
  const header = [...paths.map((p) => p.replace(/^schedule\[(\d+)\]\./, 's$1.')), `${metric}${percent ? ' %' : ''}`, 'test %', 'n', 'pruned', 'failed'];
  const rows = summaries.map((s) => [
    ...paths.map((p) => s.labels[p] ?? '-'),
    fmt(s.metricMean, s.metricStd, percent),
    fmt(s.testMean, s.testStd, true),
    String(s.n),
    String(s.pruned),
    String(s.failed),
  ]);
  return formatTable(header, rows);
}

/** The best configuration as a runnable experiment (the first seed of the sweep). */
export function bestSpec(sweep: SweepSpec, best: ConfigSummary): ExperimentSpec {
  const spec = applyValues(sweep, best.values) as ExperimentSpec;
  return { ...spec, name: `${sweep.base.name}[${configLabel(best.labels)}]`, seed: sweep.seeds[0] ?? 0 };
}

/** Per-trial CSV (one row per trial), for spreadsheets and pandas. */
export function recordsToCsv(records: readonly TrialRecord[]): string {
  const paths = [...new Set(records.flatMap((r) => Object.keys(r.labels)))];
  const header = ['trial_id', 'config_id', ...paths, 'seed', 'status', 'best_val_accuracy', 'final_val_accuracy', 'final_val_loss',
    'test_accuracy', 'wall_seconds', 'attempts', 'worker', 'finished_at', 'error'];
  const cell = (v: unknown) => {
    const s = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const rows = records.map((r) => [r.trialId, r.configId, ...paths.map((p) => (typeof r.values[p] === 'object' ? r.labels[p] : r.values[p])),
    r.seed, r.status, r.metrics.bestValAccuracy, r.metrics.finalValAccuracy, r.metrics.finalValLoss, r.metrics.testAccuracy,
    r.wallSeconds.toFixed(2), r.attempts, r.worker, r.finishedAt, r.error ?? ''].map(cell).join(','));
  return [header.join(','), ...rows].join('\n') + '\n';
}

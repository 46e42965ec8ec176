/**
 * The study's tables and chart from the sweeps' results files: for each task and method, the
 * variant with the best mean validation accuracy, and its test accuracy (mean ± std over seeds).
 */
import { barChart, type Bar } from '../../ts-sdk/src/report/svg.js';
import { bestPerGroup, meanStd, summarize, type ConfigSummary, type TrialRecord } from '../../ts-sdk/src/sweep/index.js';
import { pairedDifference } from '../shared.js';
import { METHODS, methodOf, type Task } from './study.js';

export interface MethodRow {
  method: string;
  /** The chosen variant's label ("L2-SP alpha=0.01"). */
  chosen: string;
  /** Every variant tried, with its mean validation accuracy, in the order ranked. */
  tried: { label: string; valMean: number }[];
  seeds: number[];
  valMean: number;
  valStd: number;
  testMean: number | null;
  testStd: number | null;
  /** Test accuracy minus fine-tuning's on the same seeds (same labelled images), mean ± std. */
  vsFineTune: { mean: number; std: number; n: number } | null;
  /** Relative attention entropy (H / H_max, 1 = uniform) per stage and layer, mean over seeds. */
  attention: { stage: number; layer: string; relativeEntropy: number }[];
}

export interface TaskTable {
  task: string;
  title: string;
  short: string;
  rows: MethodRow[];
}

function attentionOf(records: readonly TrialRecord[], configId: string): MethodRow['attention'] {
  const sums = new Map<string, { stage: number; layer: string; total: number; n: number }>();
  for (const r of records) {
    if (r.configId !== configId || r.status !== 'completed') continue;
    for (const a of r.attention ?? []) {
      const key = `${a.stage}/${a.layer}`;
      const s = sums.get(key) ?? { stage: a.stage, layer: a.layer, total: 0, n: 0 };
      s.total += a.maxEntropy > 0 ? a.entropy / a.maxEntropy : 0;
      s.n += 1;
      sums.set(key, s);
    }
  }
  return [...sums.values()].map((s) => ({ stage: s.stage, layer: s.layer, relativeEntropy: s.total / s.n }));
}

function testBySeed(records: readonly TrialRecord[], configId: string): Map<number, number> {
  return new Map(records.filter((r) => r.configId === configId && r.status === 'completed' && r.metrics.testAccuracy !== null)
    .map((r) => [r.seed, r.metrics.testAccuracy!]));
}

export function taskTable(task: Task, records: readonly TrialRecord[]): TaskTable {
  const summaries = summarize(records, 'bestValAccuracy', 'max');
  const label = (s: ConfigSummary) => s.labels.method ?? '';
  const picked = bestPerGroup(summaries, (s) => methodOf(label(s)), METHODS.map((m) => m.name));
  const fineTune = picked.find((p) => p.group === 'fine-tune');
  const fineTuneTests = fineTune ? testBySeed(records, fineTune.best.configId) : undefined;
  const rows = picked.map(({ group, best, candidates }) => ({
    method: group,
    chosen: label(best),
    tried: candidates.map((c) => ({ label: label(c), valMean: c.metricMean })),
    seeds: best.seeds,
    valMean: best.metricMean,
    valStd: best.metricStd,
    testMean: best.testMean,
    testStd: best.testStd,
    vsFineTune: group === 'fine-tune' ? null : pairedDifference(testBySeed(records, best.configId), fineTuneTests),
    attention: attentionOf(records, best.configId),
  }));
  return { task: task.id, title: task.title, short: task.short, rows };
}

const pm = (mean: number | null, std: number | null) => (mean === null ? '-' : `${(100 * mean).toFixed(1)} ± ${(100 * (std ?? 0)).toFixed(1)}`);
/** A paired difference in points, signed ("+4.4 ± 0.9"), or '-' without one. */
const signedPm = (d: MethodRow['vsFineTune']) => (d ? `${d.mean >= 0 ? '+' : ''}${pm(d.mean, d.std)}` : '-');

function chosenValue(row: MethodRow): string {
  const rest = row.chosen.slice(row.method.length).trim();
  return rest || '-';
}

/** The headline table: methods down, tasks across, test accuracy of each method's chosen variant. */
export function headlineMarkdown(tables: readonly TaskTable[]): string {
  const header = `| method | ${tables.map((t) => `${t.title}: test % (chosen)`).join(' | ')} |`;
  const rule = `| --- | ${tables.map(() => '---').join(' | ')} |`;
  const lines = METHODS.map((m) => {
    const cells = tables.map((t) => {
      const row = t.rows.find((r) => r.method === m.name);
      return row ? `${pm(row.testMean, row.testStd)} (${chosenValue(row)})` : '-';
    });
    return `| ${m.name} | ${cells.join(' | ')} |`;
  });
  return [header, rule, ...lines].join('\n');
}

/** Per task: validation accuracy of every variant tried, and the learned attention's entropy. */
export function detailMarkdown(tables: readonly TaskTable[]): string {
  return tables.map((t) => {
    const lines = t.rows.map((r) => {
      const tried = r.tried.map((c) => `${c.label.slice(r.method.length).trim() || r.method}: ${(100 * c.valMean).toFixed(1)}`).join('; ');
      const att = attentionCell(r.attention);
      return `| ${r.method} | ${chosenValue(r)} | ${pm(r.valMean, r.valStd)} | ${pm(r.testMean, r.testStd)} | ${signedPm(r.vsFineTune)} | ${r.seeds.length} | ${tried} | ${att} |`;
    });
    return [
      `#### ${t.title}`,
      '',
      '| method | chosen | val % | test % | test − fine-tune (same seeds) | seeds | val % of each variant tried | attention entropy H/H_max per aligned layer |',
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
      ...lines,
    ].join('\n');
  }).join('\n\n');
}

const STANDALONE_STYLE = '<style>text{font-family:system-ui,sans-serif}.title{font-size:13px;font-weight:600}.tick{font-size:10px;fill:#555}' +
  '.label{font-size:11px;fill:#333}.axis{stroke:#333}.grid{stroke:#e4e4e4}</style><rect width="100%" height="100%" fill="#fff"/>';

/** Short method names for chart axes. */
const CHART_NAMES: Record<string, string> = {
  'from scratch': 'scratch', 'fine-tune': 'FT', 'L2-FE': 'L2-FE', 'L2-SP': 'L2-SP', 'feature-map': 'FM', DELTA: 'DELTA',
  'AST only': 'AST', 'ACT only': 'ACT', AFA: 'AFA',
};

/** One chart per task: test accuracy of each method's chosen variant, mean ± std over seeds. */
export function summaryChart(table: TaskTable): string {
  const bars: Bar[] = table.rows.filter((r) => r.testMean !== null).map((r) => ({
    category: CHART_NAMES[r.method] ?? r.method,
    values: [{ name: 'test', mean: r.testMean!, std: r.testStd ?? 0 }],
  }));
  const chart = barChart(`${table.short}: test accuracy (mean ± std over seeds)`, 'test accuracy', bars, `reproduction-${table.task}`);
  // Standalone files (linked from markdown) carry the styles the HTML report puts in its page.
  return chart.toString().replace(/^(<svg[^>]*>)/, `$1${STANDALONE_STYLE}`);
}

export interface InvestigationRow {
  variant: string;
  valMean: number;
  valStd: number;
  testMean: number | null;
  testStd: number | null;
  vsReference: MethodRow['vsFineTune'];
  attention: MethodRow['attention'];
}

/** Every variant of the investigation sweep against its reference (the first variant), same seeds. */
export function investigationRows(records: readonly TrialRecord[], reference: string): InvestigationRow[] {
  const summaries = summarize(records, 'bestValAccuracy', 'max').filter((s) => s.n > 0);
  const ref = summaries.find((s) => s.labels.variant === reference);
  const refTests = ref ? testBySeed(records, ref.configId) : undefined;
  return summaries.map((s) => ({
    variant: s.labels.variant ?? '',
    valMean: s.metricMean,
    valStd: s.metricStd,
    testMean: s.testMean,
    testStd: s.testStd,
    vsReference: s === ref ? null : pairedDifference(testBySeed(records, s.configId), refTests),
    attention: attentionOf(records, s.configId),
  }));
}

function attentionCell(attention: MethodRow['attention']): string {
  const stages = [...new Set(attention.map((a) => a.stage))];
  if (!stages.length) return '-';
  // AFA has two attentive stages: label them so the spatial and channel attention read apart.
  return stages.map((st) => `${stages.length > 1 ? `stage ${st + 1}: ` : ''}${attention.filter((a) => a.stage === st)
    .map((a) => a.relativeEntropy.toFixed(2)).join(' / ')}`).join('; ');
}

export function investigationMarkdown(title: string, rows: readonly InvestigationRow[]): string {
  const lines = rows.map((r) => {
    return `| ${r.variant} | ${pm(r.valMean, r.valStd)} | ${pm(r.testMean, r.testStd)} | ${signedPm(r.vsReference)} | ${attentionCell(r.attention)} |`;
  });
  return [
    `#### ${title}: what else was tried (ranked by validation accuracy)`,
    '',
    '| variant | val % | test % | test − reference (same seeds) | attention entropy H/H_max per aligned layer |',
    '| --- | --- | --- | --- | --- |',
    ...lines,
  ].join('\n');
}

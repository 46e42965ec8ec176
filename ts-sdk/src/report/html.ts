/**
 * `afa report`: one self-contained HTML file (inline SVG and CSS, nothing fetched) with the metric
 * against each swept parameter, learning curves per configuration and the comparison of
 * configurations with error bars.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { SweepDirectory } from '../sweep/load.js';
import { formatSummaryTable, meanStd, summarize } from '../sweep/summary.js';
import type { TrialRecord } from '../sweep/store.js';
import { configLabel } from '../sweep/trials.js';
import { barChart, xyChart, type Series } from './svg.js';

const CSS = `body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.charts{display:flex;flex-wrap:wrap;gap:12px}svg{background:#fff;border:1px solid #e4e4e4}
.title{font-size:13px;font-weight:600}.tick{font-size:10px;fill:#555}.label{font-size:11px;fill:#333}.legend{font-size:10px}
.axis{stroke:#333}.grid{stroke:#eee}pre{background:#f7f7f7;padding:10px;overflow-x:auto;font-size:12px}.muted{color:#666}`;

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function configName(labels: Record<string, string>): string {
  return configLabel(labels, ', ') || 'base';
}

function parameterCharts(loaded: SweepDirectory, completed: TrialRecord[]): string[] {
  const metric = loaded.sweep.metric;
  const percent = metric !== 'finalValLoss';
  const yFormat = (v: number) => (percent ? `${Math.round(100 * v)}%` : v.toFixed(2));
  const charts: string[] = [];
  for (const [path, dim] of Object.entries(loaded.sweep.space)) {
    const numeric = completed.every((r) => typeof r.values[path] === 'number');
    const others = Object.keys(loaded.sweep.space).filter((p) => p !== path);
    // One series per setting of the other parameters, so the effect of this one is read along a line.
    const groups = new Map<string, TrialRecord[]>();
    for (const r of completed) {
      const key = others.map((p) => `${p.split('.').at(-1)}=${r.labels[p]}`).join(', ') || 'all';
      groups.set(key, [...(groups.get(key) ?? []), r]);
    }
    const categories = numeric ? undefined : [...new Set(completed.map((r) => r.labels[path]!))];
    const xOf = (r: TrialRecord) => (numeric ? (r.values[path] as number) : categories!.indexOf(r.labels[path]!));
    const series: Series[] = [...groups.entries()].map(([name, rs]) => {
      const byX = new Map<number, number[]>();
      rs.forEach((r) => byX.set(xOf(r), [...(byX.get(xOf(r)) ?? []), r.metrics[metric]]));
      return {
        name,
        line: numeric,
        points: [...byX.entries()].map(([x, ys]) => {
          const { mean, std } = meanStd(ys);
          return { x, y: mean, err: std, title: `${name}, ${path.split('.').at(-1)}=${numeric ? x : categories![x]}: ${yFormat(mean)} ± ${yFormat(std)} (n=${ys.length})` };
        }),
      };
    });
    const xs = completed.map(xOf);
    const positive = xs.every((v) => v > 0);
    const log = numeric && positive && (dim.kind === 'logUniform' || Math.max(...xs) / Math.min(...xs) >= 20);
    const ys = series.flatMap((s) => s.points.flatMap((p) => [p.y - (p.err ?? 0), p.y + (p.err ?? 0)]));
    const yMin = percent ? Math.max(0, Math.floor(10 * Math.min(...ys)) / 10) : Math.min(...ys);
    const yMax = percent ? Math.min(1, Math.ceil(10 * Math.max(...ys)) / 10) : Math.max(...ys);
    charts.push(xyChart(`${metric} vs ${path}`,
      { label: path, min: numeric ? Math.min(...xs) : 0, max: numeric ? Math.max(...xs) : 1, log, categories, format: (v) => Number(v.toPrecision(3)).toString() },
      { label: `${metric} (mean ± std over seeds)`, min: yMin, max: yMax === yMin ? yMin + 1 : yMax, format: yFormat }, series, `param-${path}`));
  }
  return charts;
}

function learningCurves(completed: TrialRecord[]): string {
  const byConfig = new Map<string, TrialRecord[]>();
  completed.forEach((r) => byConfig.set(configName(r.labels), [...(byConfig.get(configName(r.labels)) ?? []), r]));
  const series: Series[] = [...byConfig.entries()].map(([name, rs]) => {
    const byStep = new Map<number, number[]>();
    rs.forEach((r) => r.curve.forEach((p) => byStep.set(p.globalStep, [...(byStep.get(p.globalStep) ?? []), p.accuracy])));
    return { name, line: true, points: [...byStep.entries()].map(([x, ys]) => ({ x, y: meanStd(ys).mean, title: `${name} step ${x}: ${(100 * meanStd(ys).mean).toFixed(1)}%` })) };
  });
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  return xyChart('validation accuracy during training (mean over seeds)', { label: 'step (all stages)', min: Math.min(0, ...xs), max: Math.max(1, ...xs) },
    { label: 'val accuracy', min: 0, max: 1, format: (v) => `${Math.round(100 * v)}%` }, series, 'curves');
}

function comparison(loaded: SweepDirectory): string {
  const summaries = summarize(loaded.records, loaded.sweep.metric, loaded.sweep.goal).filter((s) => s.n > 0);
  const bars = summaries.slice(0, 16).map((s) => ({
    category: configName(s.labels).replace(/^[^=]+=/, '').slice(0, 18),
    values: [
      { name: 'val (selection)', mean: s.metricMean, std: s.metricStd },
      ...(s.testMean !== null ? [{ name: 'test (reported)', mean: s.testMean, std: s.testStd ?? 0 }] : []),
    ],
  }));
  return barChart('configurations, best first: accuracy mean ± std over seeds', 'accuracy', bars, 'comparison');
}

export function renderReport(loaded: SweepDirectory): string {
  const completed = loaded.records.filter((r) => r.status === 'completed');
  const { sweep } = loaded;
  const counts = ['completed', 'pruned', 'failed'].map((s) => `${loaded.records.filter((r) => r.status === s).length} ${s}`).join(', ');
  const summaries = summarize(loaded.records, sweep.metric, sweep.goal);
  const percentMetric = sweep.metric !== 'finalValLoss';
  const sections = completed.length
    ? [
        `<h2>Comparison</h2><div class="charts">${comparison(loaded)}</div>`,
        `<h2>Metric against each swept parameter</h2><div class="charts">${parameterCharts(loaded, completed).join('')}</div>`,
        `<h2>Learning curves</h2><div class="charts">${learningCurves(completed)}</div>`,
      ]
    : ['<p>No completed trials yet.</p>'];
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(sweep.name)}: afa sweep report</title><style>${CSS}</style></head><body>
<h1>${esc(sweep.name)}</h1>
<p class="muted">${loaded.records.length} trials (${counts}); seeds ${sweep.seeds.join(', ')}; ${sweep.search} search; selection on
<b>${esc(sweep.metric)}</b> (${sweep.goal}, validation only${percentMetric ? '' : ''}); test accuracy is reported, never used to select.</p>
${sections.join('\n')}
<h2>Table</h2><pre>${esc(formatSummaryTable(summaries, sweep.metric))}</pre>
<p class="muted">Generated by afa report from ${esc(loaded.dir)}.</p>
</body></html>
`;
}

export function writeReport(loaded: SweepDirectory, path: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, renderReport(loaded));
  renameSync(tmp, path);
}

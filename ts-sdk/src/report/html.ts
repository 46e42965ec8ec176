/**
 * `afa report` on a sweep: one self-contained HTML file (inline SVG and CSS, nothing fetched) laid
 * out as sweep dashboards are: the configurations as sorted horizontal bars with the fine-tuning
 * reference drawn, the test accuracy's paired difference to it, the metric against each swept
 * parameter (log axis where values span decades), learning curves as small multiples on shared
 * axes, and the attention entropy per configuration.
 */
import { writeFileAtomically } from '../atomic-write.js';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { trialRunFolder, type SweepDirectory } from '../sweep/directory.js';
import { formatSummaryTable, meanStd, summarize, type ConfigSummary } from '../sweep/summary.js';
import { SEARCH_FILE, type TrialRecord } from '../sweep/store.js';
import { configLabel } from '../sweep/trials.js';
import { html, joinHtml, page, relativeHref, type Html } from './page.js';
import { hBarChart, PALETTE, textWidth, xyChart, type Series } from './svg.js';
import { imageRgb, overlayRgb } from './heatmap.js';
import { pngDataUrl } from './png.js';
import { renderRunReport } from './run-report.js';
import { isRunDirectory, readRunRecord, type RunRecord } from '../run/result-file.js';


const pctFormat = (v: number) => `${(100 * v).toFixed(1)}%`;
const pointsFormat = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(1)}`;

/** A configuration's name: the values alone when one parameter is swept, else name=value pairs. */
function nameOf(labels: Record<string, string>, dimensions: number): string {
  if (dimensions === 1) return Object.values(labels)[0] ?? 'base';
  return configLabel(labels, ', ') || 'base';
}

/** The fine-tuning configuration the others are compared with: one named "reference", else "fine-tune". */
function referenceOf(summaries: ConfigSummary[], dimensions: number): ConfigSummary | undefined {
  const named = summaries.map((s) => ({ s, name: nameOf(s.labels, dimensions).toLowerCase() }));
  return named.find(({ name }) => /fine-?tun/.test(name) && name.includes('reference'))?.s ??
    named.find(({ name }) => /^fine-?tun(e|ing)$/.test(name))?.s;
}

function metricFormat(metric: string): (v: number) => string {
  return metric === 'finalValLoss' ? (v) => v.toFixed(3) : pctFormat;
}

function comparison(loaded: SweepDirectory, summaries: ConfigSummary[], reference: ConfigSummary | undefined, dims: number): Html[] {
  const { metric } = loaded.sweep;
  const format = metricFormat(metric);
  const shown = summaries.filter((s) => s.n > 0);
  // Configurations the pruner stopped before any seed completed: drawn (grey) at the best they reached, after the rest.
  const pruned = summaries.filter((s) => s.n === 0 && s.pruned > 0).map((s) => ({ s, reached: prunedBest(loaded.records, s, metric) }));
  const values = [...shown.flatMap((s) => [s.metricMean - s.metricStd, s.metricMean + s.metricStd]), ...pruned.map((p) => p.reached)];
  const percent = metric !== 'finalValLoss';
  const { lo, hi } = valueRange(values, percent);
  const bars = [
    ...shown.map((s, i) => ({ label: nameOf(s.labels, dims), value: s.metricMean, err: s.metricStd, color: s === reference ? PALETTE[1] : PALETTE[0],
      title: `${nameOf(s.labels, dims)}: ${format(s.metricMean)} ± ${format(s.metricStd)} (n=${s.n}, rank ${i + 1})` })),
    ...pruned.map(({ s, reached }) => ({ label: `${nameOf(s.labels, dims)} (pruned)`, value: reached, color: '#bbb',
      title: `${nameOf(s.labels, dims)}: pruned, best ${format(reached)} before it was stopped` })),
  ];
  const charts = [hBarChart(`${metric}, mean ± std over seeds (selection, validation only), best first${pruned.length ? '; grey: pruned' : ''}`,
    bars, { min: lo, max: hi, base: lo, format, width: 640, reference: reference ? { value: reference.metricMean, label: 'fine-tuning' } : undefined },
    'comparison')];
  const paired = reference ? pairedTestDifferences(loaded.records, shown, reference) : [];
  if (paired.length) {
    // Zero inside, each side as far as the data goes: a method far below does not squash the rest.
    const lo = Math.floor(100 * Math.min(-0.01, ...paired.map((p) => p.mean - p.std))) / 100;
    const hi = Math.ceil(100 * Math.max(0.01, ...paired.map((p) => p.mean + p.std))) / 100;
    charts.push(hBarChart('test accuracy minus fine-tuning\'s, paired by seed (points, mean ± std)',
      paired.map((p) => ({ label: nameOf(p.summary.labels, dims), value: p.mean, err: p.std, color: p.mean >= 0 ? PALETTE[2] : PALETTE[1],
        title: `${nameOf(p.summary.labels, dims)}: ${pointsFormat(p.mean)} ± ${(100 * p.std).toFixed(1)} points over ${p.n} seeds` })),
      { min: lo, max: hi, base: 0, format: pointsFormat, width: 640 }, 'paired-difference'));
  }
  return charts;
}

/**
 * The axis of a metric: tenths that hold every value (accuracies within 0-100 %), and at least a
 * tenth wide: when every trial ties (all at 100 %) the axis is 90-100 %, not 100-200 % with empty bars.
 */
export function valueRange(values: readonly number[], percent: boolean): { lo: number; hi: number } {
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return { lo: 0, hi: 1 };
  if (!percent) return { lo: 0, hi: Math.max(1e-9, ...finite) * 1.05 };
  let lo = Math.max(0, Math.floor(10 * Math.min(...finite)) / 10);
  let hi = Math.min(1, Math.ceil(10 * Math.max(...finite)) / 10);
  if (hi - lo < 0.1) {
    lo = Math.max(0, Math.min(lo, hi - 0.1));
    hi = Math.min(1, lo + 0.1);
  }
  return { lo, hi };
}

/** A pruned configuration's best metric over its seeds' curves before they were stopped (mean over seeds). */
function prunedBest(records: readonly TrialRecord[], s: ConfigSummary, metric: string): number {
  const rs = records.filter((r) => r.configId === s.configId && r.status === 'pruned');
  return meanStd(rs.map((r) => (metric === 'finalValLoss' ? r.metrics.finalValLoss : r.metrics.bestValAccuracy))).mean;
}

/** Per configuration: test(config, seed) - test(reference, seed) over the seeds both completed. */
function pairedTestDifferences(records: TrialRecord[], summaries: ConfigSummary[], reference: ConfigSummary) {
  const test = (configId: string) => new Map(records
    .filter((r) => r.configId === configId && r.status === 'completed' && r.metrics.testAccuracy !== null)
    .map((r) => [r.seed, r.metrics.testAccuracy!]));
  const base = test(reference.configId);
  return summaries.filter((s) => s !== reference).flatMap((summary) => {
    const diffs = [...test(summary.configId)].filter(([seed]) => base.has(seed)).map(([seed, acc]) => acc - base.get(seed)!);
    return diffs.length ? [{ summary, n: diffs.length, ...meanStd(diffs) }] : [];
  });
}

function parameterCharts(loaded: SweepDirectory, completed: TrialRecord[]): Html[] {
  const { metric, space } = loaded.sweep;
  const format = metricFormat(metric);
  const paths = Object.keys(space);
  const charts: Html[] = [];
  for (const [path, dim] of Object.entries(space)) {
    const name = path.split('.').at(-1)!;
    // A parameter the finished trials all share (a search's first trials, a sweep filtered to one
    // value) has no effect to read: its chart would pile every point on one x. Its value is in every label.
    if (new Set(completed.map((r) => r.labels[path])).size < 2) continue;
    const numeric = completed.every((r) => typeof r.values[path] === 'number');
    if (!numeric) {
      if (paths.length === 1) continue; // the comparison above already is this chart
      const byValue = new Map<string, number[]>();
      completed.forEach((r) => byValue.set(r.labels[path]!, [...(byValue.get(r.labels[path]!) ?? []), r.metrics[metric]]));
      const bars = [...byValue.entries()].map(([label, ys]) => ({ label, ...meanStd(ys) })).sort((a, b) => b.mean - a.mean);
      charts.push(hBarChart(`${metric} by ${name} (mean over the other parameters and seeds)`,
        bars.map((b) => ({ label: b.label, value: b.mean, err: b.std })), { min: 0, max: 1, format, width: 640 }, `param-${path}`));
      continue;
    }
    const others = paths.filter((p) => p !== path);
    // One series per setting of the other parameters, so the effect of this one is read along a line.
    const groups = new Map<string, TrialRecord[]>();
    for (const r of completed) {
      const key = others.map((p) => `${p.split('.').at(-1)}=${r.labels[p]}`).join(', ') || 'all';
      groups.set(key, [...(groups.get(key) ?? []), r]);
    }
    const series: Series[] = [...groups.entries()].map(([group, rs]) => {
      const byX = new Map<number, number[]>();
      rs.forEach((r) => byX.set(r.values[path] as number, [...(byX.get(r.values[path] as number) ?? []), r.metrics[metric]]));
      return {
        name: group, line: true,
        points: [...byX.entries()].map(([x, ys]) => {
          const { mean, std } = meanStd(ys);
          return { x, y: mean, err: std, title: `${group}, ${name}=${x}: ${format(mean)} ± ${format(std)} (n=${ys.length})` };
        }),
      };
    });
    const xs = completed.map((r) => r.values[path] as number);
    const log = xs.every((v) => v > 0) && (dim.kind === 'logUniform' || Math.max(...xs) / Math.min(...xs) >= 20);
    const ys = series.flatMap((s) => s.points.flatMap((p) => [p.y - (p.err ?? 0), p.y + (p.err ?? 0)]));
    const percent = metric !== 'finalValLoss';
    const yMin = percent ? Math.max(0, Math.floor(10 * Math.min(...ys)) / 10) : Math.min(...ys);
    const yMax = percent ? Math.min(1, Math.ceil(10 * Math.max(...ys)) / 10) : Math.max(...ys);
    charts.push(xyChart(`${metric} vs ${name}${log ? ' (log axis)' : ''}`,
      { label: path, min: Math.min(...xs), max: Math.max(...xs), log, format: (v) => Number(v.toPrecision(3)).toString() },
      { label: `${metric} (mean ± std over seeds)`, min: yMin, max: yMax === yMin ? yMin + 1 : yMax, format }, series, `param-${path}`));
  }
  return charts;
}

function meanCurve(records: TrialRecord[]): { x: number; y: number }[] {
  const byStep = new Map<number, number[]>();
  records.forEach((r) => r.curve.forEach((p) => byStep.set(p.globalStep, [...(byStep.get(p.globalStep) ?? []), p.accuracy])));
  return [...byStep.entries()].map(([x, ys]) => ({ x, y: meanStd(ys).mean })).sort((a, b) => a.x - b.x);
}

/** One small chart per configuration on shared axes, the fine-tuning reference dashed in each. */
function learningCurves(completed: TrialRecord[], summaries: ConfigSummary[], reference: ConfigSummary | undefined, dims: number): Html[] {
  const byConfig = new Map<string, TrialRecord[]>();
  completed.forEach((r) => byConfig.set(r.configId, [...(byConfig.get(r.configId) ?? []), r]));
  const xMax = Math.max(1, ...completed.flatMap((r) => r.curve.map((p) => p.globalStep)));
  const refCurve = reference ? meanCurve(byConfig.get(reference.configId) ?? []) : [];
  const size = { width: 330, height: 200 };
  return summaries.filter((s) => byConfig.has(s.configId)).map((s, i) => {
    const name = nameOf(s.labels, dims);
    const room = Math.floor((size.width - 20) / textWidth('x', 13));
    const title = name.length > room ? `${name.slice(0, room - 1)}…` : name;
    const series: Series[] = [{ name, line: true, color: PALETTE[0], points: meanCurve(byConfig.get(s.configId)!).map((p) => ({ ...p, title: `${name} step ${p.x}: ${pctFormat(p.y)}` })) }];
    if (reference && s !== reference && refCurve.length) series.push({ name: 'fine-tuning', dashed: true, color: '#999', points: refCurve });
    return xyChart(title, { label: 'step (all stages)', min: 0, max: xMax }, { label: 'val accuracy', min: 0, max: 1, format: (v) => `${Math.round(100 * v)}%` },
      series, `curve-${i}`, size, { legend: false, tooltip: name });
  });
}

/** The search's own view: the best configuration so far against configurations finished, and the study's parameter importance. */
function searchSection(loaded: SweepDirectory): Html | undefined {
  const { metric, goal } = loaded.sweep;
  const format = metricFormat(metric);
  const byConfig = new Map<string, TrialRecord[]>();
  loaded.records.forEach((r) => byConfig.set(r.configId, [...(byConfig.get(r.configId) ?? []), r]));
  const finished = [...byConfig.values()].map((rs) => ({
    at: rs.map((r) => r.finishedAt).sort().at(-1)!,
    value: meanStd(rs.filter((r) => r.status === 'completed').map((r) => r.metrics[metric])).mean,
  })).sort((a, b) => a.at.localeCompare(b.at));
  if (finished.length < 2) return undefined;
  let best = NaN;
  const bestSoFar = finished.map((f, i) => {
    if (Number.isFinite(f.value) && (!Number.isFinite(best) || (goal === 'max' ? f.value > best : f.value < best))) best = f.value;
    return { x: i + 1, y: best };
  }).filter((p) => Number.isFinite(p.y));
  const each = finished.map((f, i) => ({ x: i + 1, y: f.value, title: `configuration ${i + 1}: ${format(f.value)}` })).filter((p) => Number.isFinite(p.y));
  const { lo, hi } = valueRange(each.map((p) => p.y), metric !== 'finalValLoss');
  const charts = [xyChart(`best ${metric} so far, by configurations finished (${loaded.sweep.search} search)`,
    { label: 'configurations finished', min: 1, max: finished.length }, { label: metric, min: lo, max: hi, format },
    [{ name: 'best so far', line: true, points: bestSoFar }, { name: 'each configuration (mean over seeds)', color: '#999', points: each }], 'search-progress')];
  const importance = readImportance(loaded.dir);
  if (importance.length) {
    charts.push(hBarChart('parameter importance (Optuna, fANOVA over the completed trials)', importance.map(([name, v]) => ({ label: name, value: v })),
      { min: 0, max: 1, format: (v) => v.toFixed(2), width: 640 }, 'search-importance'));
  }
  return html`<div class="charts">${charts}</div>`;
}

/** search.json's importance, checked: name -> a number in [0, 1]; anything else is left out. */
function readImportance(dir: string): [string, number][] {
  const file = join(dir, SEARCH_FILE);
  if (!existsSync(file)) return [];
  try {
    const body = JSON.parse(readFileSync(file, 'utf8')) as { importance?: unknown };
    const entries = body.importance && typeof body.importance === 'object' ? Object.entries(body.importance as Record<string, unknown>) : [];
    return entries.filter((e): e is [string, number] => typeof e[1] === 'number' && e[1] >= 0 && e[1] <= 1 && e[0].length <= 200)
      .sort((a, b) => b[1] - a[1]).slice(0, 64);
  } catch {
    return [];
  }
}

/** Mean attention entropy per configuration, attentive stage and layer, as a share of the uniform maximum. */
function attentionTable(completed: TrialRecord[], summaries: ConfigSummary[], dims: number): Html | undefined {
  const withAttention = completed.filter((r) => r.attention?.length);
  if (!withAttention.length) return undefined;
  const layers = [...new Set(withAttention.flatMap((r) => r.attention!.map((a) => a.layer)))];
  // `stage` counts the run's stages (promote steps are not stages).
  const stageName = (r: TrialRecord, stage: number) =>
    r.spec.schedule.filter((s) => s.kind !== 'promoteTargetToSource').map((s) => (s as { name: string }).name)[stage] ?? `stage ${stage}`;
  const rows = summaries.flatMap((s) => {
    const rs = withAttention.filter((r) => r.configId === s.configId);
    const stages = [...new Set(rs.flatMap((r) => r.attention!.map((a) => a.stage)))].sort((a, b) => a - b);
    return stages.map((stage) => {
      const cells = layers.map((layer) => {
        const values = rs.flatMap((r) => r.attention!.filter((a) => a.stage === stage && a.layer === layer).map((a) => a.entropy / a.maxEntropy));
        if (!values.length) return html`<td></td>`;
        const v = meanStd(values).mean;
        return html`<td class="num" style="background:rgba(31,119,180,${(0.08 + 0.5 * v).toFixed(2)})">${v.toFixed(2)}</td>`;
      });
      return html`<tr><td>${nameOf(s.labels, dims)}</td><td>${stageName(rs[0]!, stage)}</td>${cells}</tr>`;
    });
  });
  return html`<p class="muted">Attention entropy at the end of each attentive stage over its last batch, as a share of the uniform
maximum (1 = spread evenly, 0 = all weight on one position or channel); mean over seeds.</p>
<div class="scroll"><table><thead><tr><th>configuration</th><th>stage</th>${layers.map((l) => html`<th>${l}</th>`)}</tr></thead>
<tbody>${rows}</tbody></table></div>`;
}

/** The run record of each configuration's first completed seed that kept one (sweeps from this version on). */
function firstRuns(loaded: SweepDirectory, summaries: ConfigSummary[]): Map<string, { record: RunRecord; dir: string; seed: number }> {
  const runs = new Map<string, { record: RunRecord; dir: string; seed: number }>();
  for (const s of summaries) {
    const trial = loaded.records.filter((r) => r.configId === s.configId && r.status === 'completed').sort((a, b) => a.seed - b.seed)
      .map((r) => ({ r, folder: trialRunFolder(loaded.dir, r.trialId) })).find(({ folder }) => folder && isRunDirectory(folder));
    if (trial) runs.set(s.configId, { record: readRunRecord(trial.folder!), dir: trial.folder!, seed: trial.r.seed });
  }
  return runs;
}

const THUMB = 84;

/** Per configuration (first seed): each AST layer's map over the first image, ACT's entropy, and a link to the run's report. */
function attentionGallery(loaded: SweepDirectory, summaries: ConfigSummary[], runs: ReturnType<typeof firstRuns>, dims: number,
  reportDir: string): Html | undefined {
  const rows = summaries.flatMap((s) => {
    const run = runs.get(s.configId);
    if (!run) return [];
    const link = html`<a href="${relativeHref(relative(reportDir, join(run.dir, 'report.html')))}">seed ${run.seed}</a>`;
    return run.record.result.stages.flatMap((stage) => {
      const snap = stage.attentionSnapshot;
      if (!snap) return [];
      const image = snap.images[0]!;
      const base = imageRgb(image, snap.width, snap.height, snap.channels);
      const cells = snap.layers.map((l) => {
        const share = (l.entropy / l.maxEntropy).toFixed(2);
        if (l.kind === 'channel') return html`<td class="muted small">${l.layer}<br>entropy ${share}, peak ${Math.max(...l.peakOverUniform).toFixed(1)}x</td>`;
        const src = pngDataUrl(snap.width, snap.height, overlayRgb(base, l.spatial[0]!));
        return html`<td><img src="${src}" width="${THUMB}" height="${Math.round((THUMB * snap.height) / snap.width)}" alt="${l.layer}">
<div class="muted small">${l.layer}: ${share}, peak ${(l.peakOverUniform[0] ?? 1).toFixed(1)}x</div></td>`;
      });
      return [html`<tr><td>${nameOf(s.labels, dims)}</td><td>${stage.name}</td>${cells}<td>${link}</td></tr>`];
    });
  });
  if (!rows.length) return undefined;
  return html`<p class="muted">Where the attention looks at the end of each attentive stage, on the first validation image of each
configuration's first seed (entropy as a share of uniform, and the peak weight over the uniform one); the seed's own report has every image.</p>
<div class="scroll"><table class="heat"><tbody>${rows}</tbody></table></div>`;
}

export function renderReport(loaded: SweepDirectory, reportDir = loaded.dir): string {
  const completed = loaded.records.filter((r) => r.status === 'completed');
  const curves = loaded.records.filter((r) => r.status !== 'failed' && r.curve.length);
  const { sweep } = loaded;
  const dims = Object.keys(sweep.space).length;
  const counts = ['completed', 'pruned', 'failed'].map((s) => `${loaded.records.filter((r) => r.status === s).length} ${s}`).join(', ');
  const summaries = summarize(loaded.records, sweep.metric, sweep.goal);
  const reference = referenceOf(summaries, dims);
  const params = completed.length ? parameterCharts(loaded, completed) : [];
  const runs = firstRuns(loaded, summaries);
  const search = searchSection(loaded);
  const attention = [attentionTable(completed, summaries, dims), attentionGallery(loaded, summaries, runs, dims, reportDir)].filter((a) => a !== undefined);
  const sections = completed.length
    ? html`<h2>Configurations</h2><div class="charts">${comparison(loaded, summaries, reference, dims)}</div>
${params.length ? html`<h2>Metric against each swept parameter</h2><div class="charts">${params}</div>` : ''}
${search ? html`<h2>Search</h2>${search}` : ''}
<h2>Learning curves</h2><p class="muted">Validation accuracy, mean over seeds, one chart per configuration in the order above (pruned
ones end where they were stopped)${reference ? '; dashed: fine-tuning' : ''}.</p><div class="charts">${learningCurves(curves, summaries, reference, dims)}</div>
${attention.length ? html`<h2>Attention</h2>${joinHtml(attention, '\n')}` : ''}`
    : html`<p>No completed trials yet.</p>`;
  return page(`${sweep.name}: afa sweep report`, html`<h1>${sweep.name}</h1>
<p class="muted">${loaded.records.length} trials (${counts}); seeds ${sweep.seeds.join(', ')}; ${sweep.search} search; selection on
<b>${sweep.metric}</b> (${sweep.goal}, validation only); test accuracy is reported, never used to select.</p>
${sections}
<h2>Table</h2><pre>${formatSummaryTable(summaries, sweep.metric)}</pre>
<p class="muted">Generated by afa report from ${loaded.dir}.</p>`);
}

/** The sweep's report at `path`, and each kept trial run's own report in its run directory (linked from it). */
export function writeReport(loaded: SweepDirectory, path: string): void {
  for (const { record, dir } of firstRuns(loaded, summarize(loaded.records, loaded.sweep.metric, loaded.sweep.goal)).values()) {
    writeFileAtomically(join(dir, 'report.html'), renderRunReport(record));
  }
  writeFileAtomically(path, renderReport(loaded, dirname(path)));
}

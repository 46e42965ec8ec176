/**
 * The report of one run (`afa run --report`, `afa report <run dir>`): one self-contained HTML file
 * with the stages, their learning curves, and where the attention looks: the fixed images with
 * the spatial attention of each aligned layer over them, the channel weights per layer, and the
 * attention entropy over the training steps.
 */
import type { AttentionSnapshot } from '../run/attention.js';
import type { StageResult } from '../run/events.js';
import type { RunRecord } from '../run/result-file.js';
import { pct, secs } from '../table.js';
import { html, joinHtml, page, type Html } from './page.js';
import { imageRgb, overlayRgb } from './heatmap.js';
import { pngDataUrl } from './png.js';
import { hBarChart, xyChart, type Series } from './svg.js';

/** Pixels per image side in the heat-map grid (28x28 inputs are drawn 4x, nearest neighbour). */
const CELL = 112;

function stageTable(stages: StageResult[]): Html {
  const rows = stages.map((s) => html`<tr><td>${s.name}</td><td>${s.regularizer}</td><td>${s.status}</td>
<td class="num">${s.stepsCompleted}/${s.iterations}</td><td class="num">${pct(s.bestValAccuracy)} @ ${s.bestStep}</td>
<td class="num">${pct(s.finalValAccuracy)}</td><td class="num">${secs(s.wallSeconds)}</td></tr>`);
  return html`<table><thead><tr><th>stage</th><th>regulariser</th><th>status</th><th>steps</th><th>best val (step)</th>
<th>final val</th><th>time</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function curves(stage: StageResult, index: number): Html[] {
  const steps = stage.history.steps;
  const evals = stage.history.evals.filter((e) => e.split === 'val');
  const xMax = Math.max(1, stage.iterations);
  const accuracy: Series[] = [
    { name: 'train (window mean)', line: true, points: steps.map((p) => ({ x: p.step, y: p.trainAccuracy })) },
    { name: 'validation', line: true, points: evals.map((e) => ({ x: e.step, y: e.accuracy, title: `step ${e.step}: ${pct(e.accuracy)}` })) },
  ].filter((s) => s.points.length);
  const losses: Series[] = [
    { name: 'cross-entropy', line: true, points: steps.map((p) => ({ x: p.step, y: p.ceLoss })) },
    { name: `alpha x Omega (${stage.regularizer})`, line: true, points: steps.map((p) => ({ x: p.step, y: p.regLoss })) },
  ].filter((s) => s.points.some((p) => p.y > 0));
  const yMax = Math.max(1e-9, ...losses.flatMap((s) => s.points.map((p) => p.y)));
  const charts = [xyChart(`${stage.name}: accuracy`, { label: 'step', min: 0, max: xMax },
    { label: 'accuracy', min: 0, max: 1, format: (v) => `${Math.round(100 * v)}%` }, accuracy, `stage-${index}-accuracy`)];
  if (losses.length) {
    charts.push(xyChart(`${stage.name}: training loss`, { label: 'step', min: 0, max: xMax },
      { label: 'loss (window mean)', min: 0, max: yMax * 1.05, format: (v) => v.toPrecision(2) }, losses, `stage-${index}-loss`));
  }
  return charts;
}

function heatGrid(snapshot: AttentionSnapshot, index: number, classNames: readonly string[] = []): Html {
  const { width, height, channels } = snapshot;
  const layers = snapshot.layers.filter((l) => l.kind === 'spatial');
  const head = html`<tr><th>image</th><th>input</th>${layers.map((l) => html`<th>${l.layer}<br><span class="muted">${l.mapHeight}x${l.mapWidth},
entropy ${(l.entropy / l.maxEntropy).toFixed(2)} of max</span></th>`)}</tr>`;
  const rows = snapshot.images.map((image, i) => {
    const base = imageRgb(image, width, height, channels);
    const img = (rgb: Uint8Array, alt: string) =>
      html`<img src="${pngDataUrl(width, height, rgb)}" width="${CELL}" height="${Math.round((CELL * height) / width)}" alt="${alt}">`;
    const cells = layers.map((l) => html`<td>${img(overlayRgb(base, l.spatial[i]!), `${l.layer} attention on image ${i}`)}
<div class="muted small">peak ${(l.peakOverUniform[i] ?? 1).toFixed(1)}x uniform</div></td>`);
    const name = classNames[image.label] ?? `label ${image.label}`;
    return html`<tr><td class="muted">#${i} (${name})</td><td>${img(base, `image ${i}: ${name}`)}</td>${cells}</tr>`;
  });
  return html`<div class="scroll"><table class="heat" data-heatmap="stage-${index}"><thead>${head}</thead><tbody>${rows}</tbody></table></div>`;
}

function channelBars(snapshot: AttentionSnapshot, index: number): Html[] {
  return snapshot.layers.filter((l) => l.kind === 'channel').map((l) => {
    const sorted = l.channel.map((w, c) => ({ c, w })).sort((a, b) => b.w - a.w);
    const shown = sorted.slice(0, 16);
    const uniform = 1 / l.channel.length;
    const rest = sorted.length > shown.length ? `, top 16 of ${sorted.length}` : '';
    return hBarChart(`${l.layer}: channel weights${rest}; entropy ${l.entropy.toFixed(2)} of ${l.maxEntropy.toFixed(2)} nats`,
      shown.map(({ c, w }) => ({ label: `channel ${c}`, value: w })),
      { min: 0, max: Math.max(uniform * 1.2, shown[0]?.w ?? 0), format: (v) => v.toFixed(3), reference: { value: uniform, label: 'uniform' }, width: 460 },
      `stage-${index}-channels-${l.layer}`);
  });
}

function entropyOverSteps(stage: StageResult, index: number): Html | undefined {
  const layers = [...new Set(stage.history.steps.flatMap((p) => p.attention.map((a) => a.layer)))];
  if (!layers.length) return undefined;
  const series: Series[] = layers.map((layer) => ({
    name: layer,
    line: true,
    points: stage.history.steps.flatMap((p) => p.attention.filter((a) => a.layer === layer)
      .map((a) => ({ x: p.step, y: a.entropy / a.maxEntropy, title: `${layer} step ${p.step}: ${a.entropy.toFixed(3)} nats` }))),
  }));
  return xyChart(`${stage.name}: attention entropy / uniform maximum`, { label: 'step', min: 0, max: Math.max(1, stage.iterations) },
    { label: 'entropy (1 = uniform)', min: 0, max: 1, format: (v) => v.toFixed(1) }, series, `stage-${index}-entropy`);
}

function attentionSection(stage: StageResult, index: number, classNames: readonly string[] = []): Html | undefined {
  const snapshot = stage.attentionSnapshot;
  const entropy = entropyOverSteps(stage, index);
  if (!snapshot && !entropy) return undefined;
  const parts = [html`<h3>${stage.name} (${stage.regularizer})</h3>`];
  if (snapshot) {
    parts.push(html`<p class="muted">${snapshot.images.length} ${snapshot.split} images (the first of each class), with the attention at the end of the stage.</p>`);
    if (snapshot.layers.some((l) => l.kind === 'spatial')) parts.push(heatGrid(snapshot, index, classNames));
    const bars = channelBars(snapshot, index);
    if (bars.length) parts.push(html`<div class="charts">${bars}</div>`);
  }
  if (entropy) parts.push(html`<div class="charts">${entropy}</div>`);
  return joinHtml(parts, '\n');
}

export function renderRunReport(record: RunRecord): string {
  const { spec, result } = record;
  const test = result.testAccuracy === undefined ? 'not evaluated' : pct(result.testAccuracy);
  const attention = result.stages.map((s, i) => attentionSection(s, i, result.classNames)).filter((a) => a !== undefined);
  const source = result.timings.sourceCached ? 'source cached' : `source ${secs(result.timings.pretrainSeconds)}`;
  return page(`${result.name}: afa run report`, html`<h1>${result.name}</h1>
<p class="muted">test accuracy <b>${test}</b> (read once, after selection on validation); best validation ${pct(result.bestValAccuracy)};
seed ${result.seed}; ${spec.backbone.name}; ${secs(result.timings.totalSeconds)} (${source});
spec ${result.specHash}</p>
<h2>Stages</h2>${stageTable(result.stages)}
<h2>Training</h2><div class="charts">${result.stages.map(curves)}</div>
<h2>Attention</h2>${attention.length ? joinHtml(attention, '\n') : html`<p class="muted">No stage of this run has attention (AST or ACT).</p>`}
<p class="muted">Generated by afa report.</p>`);
}

/** Minimal SVG charts for the self-contained report: no scripts, no fonts or files to fetch. */

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

const W = 560;
const H = 320;
const M = { left: 56, right: 16, top: 28, bottom: 48 };

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-12; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

export interface Axis {
  label: string;
  min: number;
  max: number;
  log?: boolean;
  /** Category names (for categorical x); positions are 0..n-1. */
  categories?: string[];
  format?: (v: number) => string;
}

function scale(axis: Axis, from: number, to: number): (v: number) => number {
  if (axis.categories) {
    const n = axis.categories.length;
    return (v) => from + ((v + 0.5) / n) * (to - from);
  }
  const f = axis.log ? Math.log10 : (v: number) => v;
  const lo = f(axis.min);
  const hi = f(axis.max);
  const span = hi - lo || 1;
  return (v) => from + ((f(v) - lo) / span) * (to - from);
}

function axes(title: string, x: Axis, y: Axis): { parts: string[]; sx: (v: number) => number; sy: (v: number) => number } {
  const sx = scale(x, M.left, W - M.right);
  const sy = scale(y, H - M.bottom, M.top);
  const parts = [`<text x="${W / 2}" y="16" text-anchor="middle" class="title">${esc(title)}</text>`];
  parts.push(`<line x1="${M.left}" y1="${H - M.bottom}" x2="${W - M.right}" y2="${H - M.bottom}" class="axis"/>`);
  parts.push(`<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${H - M.bottom}" class="axis"/>`);
  const fy = y.format ?? ((v: number) => String(v));
  for (const t of niceTicks(y.min, y.max)) {
    parts.push(`<line x1="${M.left}" y1="${sy(t)}" x2="${W - M.right}" y2="${sy(t)}" class="grid"/>`);
    parts.push(`<text x="${M.left - 6}" y="${sy(t) + 4}" text-anchor="end" class="tick">${esc(fy(t))}</text>`);
  }
  const xTicks: Array<[number, string]> = x.categories
    ? x.categories.map((c, i) => [i, c])
    : x.log
      ? niceLogTicks(x.min, x.max).map((t) => [t, (x.format ?? String)(t)])
      : niceTicks(x.min, x.max).map((t) => [t, (x.format ?? String)(t)]);
  for (const [t, label] of xTicks) {
    parts.push(`<text x="${sx(t)}" y="${H - M.bottom + 16}" text-anchor="middle" class="tick">${esc(label)}</text>`);
  }
  parts.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - 10}" text-anchor="middle" class="label">${esc(x.label)}</text>`);
  parts.push(`<text x="14" y="${(M.top + H - M.bottom) / 2}" text-anchor="middle" class="label" transform="rotate(-90 14 ${(M.top + H - M.bottom) / 2})">${esc(y.label)}</text>`);
  return { parts, sx, sy };
}

function niceLogTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    const t = 10 ** e;
    if (t >= lo * 0.999 && t <= hi * 1.001) ticks.push(t);
  }
  return ticks.length >= 2 ? ticks : [lo, hi];
}

function svg(body: string[], testId: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" data-chart="${testId}">${body.join('')}</svg>`;
}

export interface Point {
  x: number;
  y: number;
  err?: number;
  title?: string;
}

export interface Series {
  name: string;
  points: Point[];
  /** Draw the points joined by a line. */
  line?: boolean;
}

function legend(series: Series[]): string[] {
  if (series.length < 2) return [];
  return series.slice(0, 10).map((s, i) =>
    `<g transform="translate(${M.left + 8},${M.top + 6 + i * 14})"><rect width="10" height="10" fill="${PALETTE[i % PALETTE.length]}"/>` +
    `<text x="14" y="9" class="legend">${esc(s.name)}</text></g>`);
}

/** Points (with optional error bars and lines) per series. */
export function xyChart(title: string, x: Axis, y: Axis, series: Series[], testId: string): string {
  const { parts, sx, sy } = axes(title, x, y);
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    if (s.line && pts.length > 1) {
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')}"/>`);
    }
    for (const p of pts) {
      if (p.err) {
        parts.push(`<line x1="${sx(p.x)}" y1="${sy(p.y - p.err)}" x2="${sx(p.x)}" y2="${sy(p.y + p.err)}" stroke="${color}" stroke-width="1.5"/>`);
      }
      parts.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="${s.line ? 2.5 : 4}" fill="${color}"><title>${esc(p.title ?? `${s.name}: ${p.y}`)}</title></circle>`);
    }
  });
  parts.push(...legend(series));
  return svg(parts, testId);
}

export interface Bar {
  category: string;
  values: { name: string; mean: number; std: number }[];
}

/** Grouped bars with error bars (mean ± std). */
export function barChart(title: string, yLabel: string, bars: Bar[], testId: string, yMax = 1): string {
  const categories = bars.map((b) => b.category);
  const x: Axis = { label: '', min: 0, max: categories.length, categories };
  const y: Axis = { label: yLabel, min: 0, max: yMax, format: (v) => `${Math.round(v * 100)}%` };
  const { parts, sy } = axes(title, x, y);
  const slot = (W - M.left - M.right) / Math.max(1, categories.length);
  const names = [...new Set(bars.flatMap((b) => b.values.map((v) => v.name)))];
  const width = (slot * 0.7) / Math.max(1, names.length);
  bars.forEach((b, ci) => {
    b.values.forEach((v) => {
      const k = names.indexOf(v.name);
      const x0 = M.left + ci * slot + slot * 0.15 + k * width;
      const color = PALETTE[k % PALETTE.length];
      parts.push(`<rect x="${x0.toFixed(1)}" y="${sy(v.mean).toFixed(1)}" width="${(width - 2).toFixed(1)}" height="${(sy(0) - sy(v.mean)).toFixed(1)}" fill="${color}">` +
        `<title>${esc(`${b.category} ${v.name}: ${(100 * v.mean).toFixed(1)} ± ${(100 * v.std).toFixed(1)}%`)}</title></rect>`);
      const cx = x0 + (width - 2) / 2;
      parts.push(`<line x1="${cx}" y1="${sy(Math.min(yMax, v.mean + v.std))}" x2="${cx}" y2="${sy(Math.max(0, v.mean - v.std))}" stroke="#222" stroke-width="1.5"/>`);
    });
  });
  parts.push(...legend(names.map((name) => ({ name, points: [] }))));
  return svg(parts, testId);
}

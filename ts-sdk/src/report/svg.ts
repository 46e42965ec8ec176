/** Minimal SVG charts for the self-contained report: no scripts, no fonts or files to fetch; all markup through `html`. */
import { html, type Html } from './page.js';

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

/** Size of a chart: the default is a half-page chart; small multiples pass their own. */
export interface ChartSize {
  width: number;
  height: number;
}

const DEFAULT_SIZE: ChartSize = { width: 640, height: 320 };
const M = { left: 56, right: 16, top: 28, bottom: 48 };

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

function axes(title: string, x: Axis, y: Axis, size: ChartSize): { parts: Html[]; sx: (v: number) => number; sy: (v: number) => number } {
  const { width: W, height: H } = size;
  const sx = scale(x, M.left, W - M.right);
  const sy = scale(y, H - M.bottom, M.top);
  const parts = [html`<text x="${W / 2}" y="16" text-anchor="middle" class="title">${title}</text>`];
  parts.push(html`<line x1="${M.left}" y1="${H - M.bottom}" x2="${W - M.right}" y2="${H - M.bottom}" class="axis"/>`);
  parts.push(html`<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${H - M.bottom}" class="axis"/>`);
  const fy = y.format ?? ((v: number) => String(v));
  const yTicks = niceTicks(y.min, y.max, Math.max(2, Math.floor((H - M.top - M.bottom) / 40)));
  for (const t of yTicks) {
    parts.push(html`<line x1="${M.left}" y1="${sy(t)}" x2="${W - M.right}" y2="${sy(t)}" class="grid"/>`);
    parts.push(html`<text x="${M.left - 6}" y="${sy(t) + 4}" text-anchor="end" class="tick">${fy(t)}</text>`);
  }
  const xTicks: Array<[number, string]> = x.categories
    ? x.categories.map((c, i) => [i, c])
    : x.log
      ? niceLogTicks(x.min, x.max).map((t) => [t, (x.format ?? String)(t)])
      : niceTicks(x.min, x.max, Math.max(2, Math.floor((W - M.left - M.right) / 70))).map((t) => [t, (x.format ?? String)(t)]);
  // Tick labels that would touch their neighbour are left out (every k-th is kept), never overprinted.
  const room = (W - M.left - M.right) / Math.max(1, xTicks.length);
  const widest = Math.max(0, ...xTicks.map(([, label]) => textWidth(label, 10)));
  const every = Math.max(1, Math.ceil((widest + 6) / room));
  xTicks.forEach(([t, label], i) => {
    if (i % every) return;
    parts.push(html`<text x="${sx(t)}" y="${H - M.bottom + 16}" text-anchor="middle" class="tick">${label}</text>`);
  });
  parts.push(html`<text x="${(M.left + W - M.right) / 2}" y="${H - 10}" text-anchor="middle" class="label">${x.label}</text>`);
  parts.push(html`<text x="14" y="${(M.top + H - M.bottom) / 2}" text-anchor="middle" class="label" transform="rotate(-90 14 ${(M.top + H - M.bottom) / 2})">${y.label}</text>`);
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

/** The chart's outer element; `head` goes first inside it (a tooltip for the whole chart). */
function svg(body: Html[], testId: string, size: ChartSize, extraHeight = 0, head?: Html): Html {
  const h = size.height + extraHeight;
  return html`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${size.width} ${h}" width="${size.width}" height="${h}" data-chart="${testId}">${head}${body}</svg>`;
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
  /** @default the palette's colour for the series' index */
  color?: string;
  /** A reference drawn thin and dashed, without points. */
  dashed?: boolean;
}

/**
 * The legend below the plot, entries flowing in rows: it never covers a line, and lists every
 * series. Returns its parts and the height it adds.
 */
function legend(names: string[], colors: string[], size: ChartSize): { parts: Html[]; height: number } {
  const { width: W, height: H } = size;
  if (names.length < 2) return { parts: [], height: 0 };
  const parts: Html[] = [];
  let x = M.left;
  let y = H + 2;
  for (const [i, name] of names.entries()) {
    const w = 18 + textWidth(name, 10) + 14;
    if (x + w > W - M.right && x > M.left) {
      x = M.left;
      y += 15;
    }
    parts.push(html`<g transform="translate(${x.toFixed(1)},${y})"><rect width="10" height="10" fill="${colors[i]}"/><text x="14" y="9" class="legend">${name}</text></g>`);
    x += w;
  }
  return { parts, height: y - H + 16 };
}

/** Points (with optional error bars and lines) per series; the legend below the plot. */
export function xyChart(title: string, x: Axis, y: Axis, series: Series[], testId: string, size: ChartSize = DEFAULT_SIZE,
  options: { legend?: boolean; tooltip?: string } = {}): Html {
  const { parts, sx, sy } = axes(title, x, y, size);
  const colors = series.map((s, i) => s.color ?? PALETTE[i % PALETTE.length]!);
  series.forEach((s, i) => {
    const color = colors[i];
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    if ((s.line || s.dashed) && pts.length > 1) {
      const points = pts.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
      parts.push(s.dashed
        ? html`<polyline fill="none" stroke="${color}" stroke-width="1.5" stroke-dasharray="4 3" points="${points}"/>`
        : html`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points}"/>`);
    }
    if (s.dashed) return;
    for (const p of pts) {
      if (p.err) {
        parts.push(html`<line x1="${sx(p.x)}" y1="${sy(p.y - p.err)}" x2="${sx(p.x)}" y2="${sy(p.y + p.err)}" stroke="${color}" stroke-width="1.5"/>`);
      }
      parts.push(html`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="${s.line ? 2.5 : 4}" fill="${color}"><title>${p.title ?? `${s.name}: ${p.y}`}</title></circle>`);
    }
  });
  const key = options.legend === false ? { parts: [], height: 0 } : legend(series.map((s) => s.name), colors, size);
  return svg([...parts, ...key.parts], testId, size, key.height, options.tooltip === undefined ? undefined : html`<title>${options.tooltip}</title>`);
}

export interface Bar {
  category: string;
  values: { name: string; mean: number; std: number }[];
}

/** Grouped bars with error bars (mean ± std). */
export function barChart(title: string, yLabel: string, bars: Bar[], testId: string, yMax = 1): Html {
  const categories = bars.map((b) => b.category);
  const x: Axis = { label: '', min: 0, max: categories.length, categories };
  const y: Axis = { label: yLabel, min: 0, max: yMax, format: (v) => `${Math.round(v * 100)}%` };
  const size = DEFAULT_SIZE;
  const { parts, sy } = axes(title, x, y, size);
  const slot = (size.width - M.left - M.right) / Math.max(1, categories.length);
  const names = [...new Set(bars.flatMap((b) => b.values.map((v) => v.name)))];
  const width = (slot * 0.7) / Math.max(1, names.length);
  bars.forEach((b, ci) => {
    b.values.forEach((v) => {
      const k = names.indexOf(v.name);
      const x0 = M.left + ci * slot + slot * 0.15 + k * width;
      const color = PALETTE[k % PALETTE.length];
      const tip = `${b.category} ${v.name}: ${(100 * v.mean).toFixed(1)} ± ${(100 * v.std).toFixed(1)}%`;
      parts.push(html`<rect x="${x0.toFixed(1)}" y="${sy(v.mean).toFixed(1)}" width="${(width - 2).toFixed(1)}" height="${(sy(0) - sy(v.mean)).toFixed(1)}" fill="${color}"><title>${tip}</title></rect>`);
      const cx = x0 + (width - 2) / 2;
      parts.push(html`<line x1="${cx}" y1="${sy(Math.min(yMax, v.mean + v.std))}" x2="${cx}" y2="${sy(Math.max(0, v.mean - v.std))}" stroke="#222" stroke-width="1.5"/>`);
    });
  });
  const key = legend(names, names.map((_, i) => PALETTE[i % PALETTE.length]!), size);
  return svg([...parts, ...key.parts], testId, size, key.height);
}

export interface HBar {
  label: string;
  value: number;
  /** Half-width of the error bar (std). */
  err?: number;
  /** Hover text. */
  title?: string;
  /** Fill colour. @default PALETTE[0] */
  color?: string;
}

export interface HBarOptions {
  /** Axis range; include 0 for bars that grow from zero. */
  min: number;
  max: number;
  format: (v: number) => string;
  /** A reference drawn as a dashed vertical line (e.g. fine-tuning's accuracy, or a uniform weight). */
  reference?: { value: number; label: string };
  /** Bars start here (0 for magnitudes; differences grow from 0 both ways). @default max(min, 0) */
  base?: number;
  width?: number;
}

/** Approximate width of a label at the report's 11 px font, for laying out without a browser. */
export function textWidth(text: string, px = 11): number {
  return text.length * px * 0.58;
}

/**
 * Horizontal bars, one row per label, in the order given (sort before): labels never overlap, however
 * many or long they are, and each bar carries its value as text.
 */
export function hBarChart(title: string, bars: HBar[], options: HBarOptions, testId: string): Html {
  // Wide enough for its title: a long title widens the chart rather than being cut off.
  const width = Math.max(options.width ?? 700, Math.ceil(textWidth(title, 13)) + 24);
  const row = 22;
  const labelWidth = Math.min(320, Math.max(60, ...bars.map((b) => textWidth(b.label) + 12)));
  const valueWidth = 96;
  const left = labelWidth;
  const right = width - valueWidth;
  const top = 48;
  const height = top + bars.length * row + 30;
  const span = options.max - options.min || 1;
  const sx = (v: number) => left + ((Math.min(options.max, Math.max(options.min, v)) - options.min) / span) * (right - left);
  const base = options.base ?? Math.max(options.min, 0);
  const parts = [html`<text x="${width / 2}" y="16" text-anchor="middle" class="title">${title}</text>`];
  for (const t of niceTicks(options.min, options.max, 6)) {
    parts.push(html`<line x1="${sx(t).toFixed(1)}" y1="${top - 6}" x2="${sx(t).toFixed(1)}" y2="${height - 26}" class="grid"/>`);
    parts.push(html`<text x="${sx(t).toFixed(1)}" y="${height - 12}" text-anchor="middle" class="tick">${options.format(t)}</text>`);
  }
  bars.forEach((b, i) => {
    const y = top + i * row;
    const x0 = sx(Math.min(base, b.value));
    const x1 = sx(Math.max(base, b.value));
    const label = b.label.length > 52 ? `${b.label.slice(0, 51)}…` : b.label;
    parts.push(html`<text x="${left - 8}" y="${y + 14}" text-anchor="end" class="label">${label}<title>${b.label}</title></text>`);
    parts.push(html`<rect x="${x0.toFixed(1)}" y="${y + 4}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${row - 8}" fill="${b.color ?? PALETTE[0]}"><title>${b.title ?? `${b.label}: ${options.format(b.value)}`}</title></rect>`);
    if (b.err) {
      parts.push(html`<line x1="${sx(b.value - b.err).toFixed(1)}" y1="${y + row / 2}" x2="${sx(b.value + b.err).toFixed(1)}" y2="${y + row / 2}" stroke="#222" stroke-width="1.5"/>`);
    }
    const text = `${options.format(b.value)}${b.err ? ` ± ${options.format(b.err)}` : ''}`;
    parts.push(html`<text x="${right + 6}" y="${y + 14}" class="tick">${text}</text>`);
  });
  parts.push(html`<line x1="${sx(base).toFixed(1)}" y1="${top - 6}" x2="${sx(base).toFixed(1)}" y2="${height - 26}" class="axis"/>`);
  if (options.reference) {
    const x = sx(options.reference.value).toFixed(1);
    parts.push(html`<line x1="${x}" y1="${top - 10}" x2="${x}" y2="${height - 26}" stroke="#d62728" stroke-width="1.5" stroke-dasharray="5 3"/>`);
    parts.push(html`<text x="${x}" y="${top - 14}" text-anchor="middle" class="tick" fill="#d62728">${options.reference.label}</text>`);
  }
  return svg(parts, testId, { width, height });
}

/**
 * The regime map's tables from committed files only (each sweep's results.jsonl and the stage
 * facts, drift included, in stages.json): two protocols side by side, robustness to the step size,
 * and the mechanism. Every difference to fine-tuning is paired by seed (the same seed is the same
 * labelled set); a difference is a gain (or a loss) when its 95 % interval over seeds, mean ± t x
 * std / sqrt(n), excludes 0, and noise otherwise.
 *
 * (a) The paper's protocol: one lr shared by every method; the difference at each lr.
 * (b) The fair one: each method's lr chosen on validation (mean over seeds) per labels-per-class,
 *     fine-tuning's too, then the paired test difference of the two choices. A gain that survives
 *     (b) is a gain; one that exists only under (a) is robustness to the lr.
 */
import { meanStd, type TrialRecord } from '../../ts-sdk/src/sweep/index.js';
import { pairedDifference, type TrialFacts } from '../shared.js';
import { spearman } from '../recipes/report.js';
import { LABELS, LRS, METHOD_NAMES, REFERENCE, type MethodName } from './sweeps.js';

export interface RegimeTask {
  id: string;
  title: string;
  records: TrialRecord[];
  facts: Map<string, TrialFacts>;
}

/** A cell of the map: one method at one lr and one labels-per-class, its completed seeds. */
interface Cell {
  method: MethodName;
  lr: number;
  labels: number;
  records: TrialRecord[];
}

/** "AFA lr=0.1" -> AFA, 0.1. */
export function parseVariant(variant: string): { method: MethodName; lr: number } | undefined {
  const m = /^(.+) lr=([\d.e-]+)$/.exec(variant);
  const method = m && METHOD_NAMES.find((n) => n === m[1]);
  return method ? { method, lr: Number(m[2]) } : undefined;
}

export function cells(task: RegimeTask): Cell[] {
  const out = new Map<string, Cell>();
  for (const r of task.records) {
    const variant = parseVariant(r.labels.method ?? '');
    const labels = Number(r.labels['target.labelsPerClass']);
    if (!variant || r.status !== 'completed') continue;
    const key = `${variant.method}|${variant.lr}|${labels}`;
    const cell = out.get(key) ?? { ...variant, labels, records: [] };
    cell.records.push(r);
    out.set(key, cell);
  }
  return [...out.values()];
}

const find = (all: Cell[], method: string, lr: number, labels: number) => all.find((c) => c.method === method && c.lr === lr && c.labels === labels);
const testBySeed = (c: Cell | undefined) => new Map((c?.records ?? []).filter((r) => r.metrics.testAccuracy !== null).map((r) => [r.seed, r.metrics.testAccuracy!]));
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
export const valMean = (c: Cell | undefined) => mean((c?.records ?? []).map((r) => r.metrics.bestValAccuracy));
export const testMean = (c: Cell | undefined) => mean([...testBySeed(c).values()]);

/** Student's t at 97.5 % for n - 1 degrees of freedom (n seeds), for the 95 % interval of a paired mean. */
const T975 = [NaN, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228];
export function tCritical(n: number): number {
  return n - 1 < T975.length ? T975[n - 1]! : 1.96;
}

export interface Paired {
  mean: number;
  std: number;
  n: number;
  /** 'gain' or 'loss' when the 95 % interval excludes 0, else 'noise'. */
  verdict: 'gain' | 'loss' | 'noise';
}

export function paired(a: Cell | undefined, b: Cell | undefined): Paired | null {
  const d = pairedDifference(testBySeed(a), testBySeed(b));
  if (!d) return null;
  const half = d.n > 1 ? (tCritical(d.n) * d.std) / Math.sqrt(d.n) : Infinity;
  return { ...d, verdict: d.mean - half > 0 ? 'gain' : d.mean + half < 0 ? 'loss' : 'noise' };
}

/** The lr of a method at a labels-per-class with the best mean validation accuracy over seeds (ties: the smaller lr). */
export function chosenLr(all: Cell[], method: string, labels: number): number | undefined {
  let best: { lr: number; val: number } | undefined;
  for (const lr of LRS) {
    const val = valMean(find(all, method, lr, labels));
    if (Number.isFinite(val) && (!best || val > best.val)) best = { lr, val };
  }
  return best?.lr;
}

/** Protocol (a): at one shared lr. */
export function sharedLr(all: Cell[], method: string, lr: number, labels: number): Paired | null {
  return paired(find(all, method, lr, labels), find(all, REFERENCE, lr, labels));
}

/** Protocol (b): each at its own lr chosen on validation; the lrs chosen, and the paired difference. */
export function ownLr(all: Cell[], method: string, labels: number): { lr?: number; referenceLr?: number; paired: Paired | null } {
  const lr = chosenLr(all, method, labels);
  const referenceLr = chosenLr(all, REFERENCE, labels);
  if (lr === undefined || referenceLr === undefined) return { lr, referenceLr, paired: null };
  return { lr, referenceLr, paired: paired(find(all, method, lr, labels), find(all, REFERENCE, referenceLr, labels)) };
}

/**
 * Robustness to the step size at a labels-per-class: the spread of mean test accuracy over the lr
 * grid (best minus worst), and what is lost at twice the lr chosen on validation (NaN where 2x is
 * off the grid).
 */
export function robustness(all: Cell[], method: string, labels: number): { spread: number; atDouble: number; lr?: number } {
  const tests = LRS.map((lr) => testMean(find(all, method, lr, labels))).filter(Number.isFinite);
  const lr = chosenLr(all, method, labels);
  const atDouble = lr === undefined ? NaN : testMean(find(all, method, 2 * lr, labels)) - testMean(find(all, method, lr, labels));
  return { spread: tests.length ? Math.max(...tests) - Math.min(...tests) : NaN, atDouble, lr };
}

/** The drift of a trial at the end of its last stage (weight and feature, relative), from its stage facts. */
export function driftOf(task: RegimeTask, record: TrialRecord): { weight: number; feature: number } | undefined {
  const stages = task.facts.get(record.trialId)?.stages ?? [];
  const last = [...stages].reverse().find((s) => s.drift);
  return last?.drift ? { weight: last.drift.weightRelative, feature: last.drift.featureRelative } : undefined;
}

const meanDrift = (task: RegimeTask, c: Cell | undefined, key: 'weight' | 'feature') =>
  mean((c?.records ?? []).map((r) => driftOf(task, r)?.[key]).filter((x): x is number => x !== undefined));

/**
 * The mechanism: over the map's cells (labels x lr) of a task, Spearman's rho between how far
 * fine-tuning drifted from the source (its relative weight distance) and the method's paired gain
 * at the same lr (protocol a). rho > 0: alignment pays where fine-tuning drifts far.
 */
export function driftAgainstGain(task: RegimeTask, all: Cell[], method: string): { rho: number; cells: number } {
  const pairs: Array<[number, number]> = [];
  for (const labels of LABELS) {
    for (const lr of LRS) {
      const drift = meanDrift(task, find(all, REFERENCE, lr, labels), 'weight');
      const gain = sharedLr(all, method, lr, labels)?.mean;
      if (Number.isFinite(drift) && gain !== undefined && Number.isFinite(gain)) pairs.push([drift, gain]);
    }
  }
  return { rho: pairs.length >= 3 ? spearman(pairs.map((p) => p[0]), pairs.map((p) => p[1])) : NaN, cells: pairs.length };
}

const signed = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}`;
const pct = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(1) : '-');
const mark = (p: Paired) => (p.verdict === 'gain' ? ' **gain**' : p.verdict === 'loss' ? ' *loss*' : '');
export const pairedText = (p: Paired | null) => (p ? `${signed(p.mean)} ± ${(100 * p.std).toFixed(1)}${mark(p)}` : '-');

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const aligning = METHOD_NAMES.filter((m) => m !== REFERENCE);

/** (a): per labels x lr, fine-tuning's test accuracy and each method's paired difference to it. */
export function sharedLrTable(task: RegimeTask): string {
  const all = cells(task);
  const rows = LABELS.flatMap((labels) => LRS.map((lr) => [String(labels), String(lr), pct(testMean(find(all, REFERENCE, lr, labels))),
    ...aligning.map((m) => pairedText(sharedLr(all, m, lr, labels)))]));
  return table(['labels/class', 'lr', 'fine-tune test %', ...aligning.map((m) => `${m} - FT`)], rows);
}

/** (b): per labels, each method's own lr (chosen on validation) against fine-tuning's own. */
export function ownLrTable(task: RegimeTask): string {
  const all = cells(task);
  const rows = LABELS.map((labels) => {
    const ftLr = chosenLr(all, REFERENCE, labels);
    return [String(labels), ftLr === undefined ? '-' : `${pct(testMean(find(all, REFERENCE, ftLr, labels)))} (lr ${ftLr})`,
      ...aligning.map((m) => {
        const o = ownLr(all, m, labels);
        return o.paired ? `${pairedText(o.paired)} (lr ${o.lr})` : '-';
      })];
  });
  return table(['labels/class', 'fine-tune test % (its lr)', ...aligning.map((m) => `${m} - FT (its lr)`)], rows);
}

/** Robustness: per method and labels, the spread over lrs and the loss at 2x the chosen lr, in points. */
export function robustnessTable(task: RegimeTask): string {
  const all = cells(task);
  const rows = METHOD_NAMES.map((m) => [m, ...LABELS.map((labels) => {
    const r = robustness(all, m, labels);
    return `${pct(r.spread)}; ${Number.isFinite(r.atDouble) ? signed(r.atDouble) : '-'} (lr ${r.lr ?? '-'})`;
  })]);
  return table(['method', ...LABELS.map((l) => `${l}/class: spread over lr; at 2x chosen lr`)], rows);
}

/** The mechanism: fine-tuning's drift per cell, and rho of drift against each method's gain (a). */
export function mechanismTable(task: RegimeTask): string {
  const all = cells(task);
  const rows = LABELS.map((labels) => [String(labels), ...LRS.map((lr) => {
    const c = find(all, REFERENCE, lr, labels);
    return `${meanDrift(task, c, 'weight').toFixed(3)} / ${meanDrift(task, c, 'feature').toFixed(2)}`;
  })]);
  const rhos = aligning.map((m) => {
    const d = driftAgainstGain(task, all, m);
    return `${m}: rho ${Number.isFinite(d.rho) ? d.rho.toFixed(2) : '-'} over ${d.cells} cells`;
  });
  return `${table(['labels/class', ...LRS.map((lr) => `FT drift at lr ${lr}: weights / features`)], rows)}\n\n` +
    `Spearman's rho between fine-tuning's weight drift and the method's gain at the same lr (a), over the cells: ${rhos.join('; ')}.`;
}

/** Per method and labels, the finding in words: gain under (b), robustness only under (a), or neither. */
export function verdicts(task: RegimeTask): Array<{ method: string; labels: number; verdict: 'gain' | 'loss' | 'robustness' | 'none'; text: string }> {
  const all = cells(task);
  return aligning.flatMap((method) => LABELS.map((labels) => {
    const b = ownLr(all, method, labels).paired;
    const a = LRS.map((lr) => ({ lr, p: sharedLr(all, method, lr, labels) })).filter((x) => x.p?.verdict === 'gain');
    if (b?.verdict === 'gain') return { method, labels, verdict: 'gain' as const, text: `gain under both protocols (b: ${pairedText(b)})` };
    if (b?.verdict === 'loss') return { method, labels, verdict: 'loss' as const, text: `a loss at its own lr (b: ${pairedText(b)})` };
    if (a.length) {
      return { method, labels, verdict: 'robustness' as const,
        text: `above fine-tuning only at a shared lr (${a.map((x) => `lr ${x.lr}: ${pairedText(x.p)}`).join(', ')}); at its own lr ${pairedText(b)}: robustness to the lr, not a better optimum` };
    }
    return { method, labels, verdict: 'none' as const, text: `fine-tuning within noise (b: ${pairedText(b)})` };
  }));
}

export { meanStd };

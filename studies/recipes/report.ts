/**
 * The tables of `studies/recipes.ts` from committed files only: each sweep's results.jsonl and the
 * per-stage facts (stability estimate, alpha x Omega, channel attention against discrepancy) that
 * `stageFacts` extracts from the run records into stages.json. Every difference to fine-tuning is
 * paired: the same seed is the same labelled set.
 */
import { meanStd, type TrialRecord } from '../../ts-sdk/src/sweep/index.js';
import { blowUp, pairedDifference, type StageFacts, type TrialFacts } from '../shared.js';
import { AFA_RATIOS, RATIOS, REFERENCE } from './sweeps.js';

export { stageFacts, type ChannelFacts, type StageFacts, type TrialFacts } from '../shared.js';

/** Spearman's rank correlation (ties share their mean rank). */
export function spearman(a: readonly number[], b: readonly number[]): number {
  const ranks = (xs: readonly number[]) => {
    const order = xs.map((x, i) => [x, i] as const).sort((p, q) => p[0] - q[0]);
    const r = new Array<number>(xs.length);
    for (let i = 0; i < order.length;) {
      let j = i;
      while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
      for (let k = i; k <= j; k++) r[order[k]![1]] = (i + j) / 2;
      i = j + 1;
    }
    return r;
  };
  const ra = ranks(a);
  const rb = ranks(b);
  const ma = ra.reduce((s, x) => s + x, 0) / ra.length;
  const mb = rb.reduce((s, x) => s + x, 0) / rb.length;
  let num = 0, da = 0, db = 0;
  for (let i = 0; i < ra.length; i++) {
    num += (ra[i]! - ma) * (rb[i]! - mb);
    da += (ra[i]! - ma) ** 2;
    db += (rb[i]! - mb) ** 2;
  }
  return da && db ? num / Math.sqrt(da * db) : NaN;
}

/** One task's records (both sweeps) and stage facts. */
export interface TaskData {
  id: string;
  title: string;
  records: TrialRecord[];
  facts: Map<string, TrialFacts>;
}

const pct = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(1) : '-');
const signed = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}`;

function completed(task: TaskData, label: string): TrialRecord[] {
  return task.records.filter((r) => r.labels.method === label && r.status === 'completed');
}

/** Test accuracy minus `reference`'s on the same seeds. */
export function paired(task: TaskData, label: string, reference = REFERENCE): { mean: number; std: number; n: number } | null {
  const tests = (l: string) => new Map(completed(task, l).filter((r) => r.metrics.testAccuracy != null).map((r) => [r.seed, r.metrics.testAccuracy!]));
  return pairedDifference(tests(label), tests(reference));
}

const meanOf = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const valMean = (task: TaskData, label: string) => meanOf(completed(task, label).map((r) => r.metrics.bestValAccuracy));

export function pairedCell(task: TaskData, label: string, reference = REFERENCE): string {
  if (label === reference) return '-';
  const d = paired(task, label, reference);
  return d ? `${signed(d.mean)} ± ${(100 * d.std).toFixed(1)}` : '-';
}

function testCell(task: TaskData, label: string): string {
  const tests = completed(task, label).map((r) => r.metrics.testAccuracy).filter((x): x is number => x != null);
  if (!tests.length) return '-';
  const { mean, std } = meanStd(tests);
  return `${pct(mean)} ± ${pct(std)}`;
}

/** Each method's grid of ratios in the study. */
export const GRIDS: Record<string, readonly number[]> = {
  'feature-map': [...RATIOS, 1.5],
  DELTA: [0.01, 0.1],
  AST: RATIOS,
  ACT: RATIOS,
  AFA: AFA_RATIOS,
};

/** The ratio with the best mean validation accuracy over seeds (ties: the smaller ratio). */
export function chosenRatio(task: TaskData, method: string): number | undefined {
  let best: { ratio: number; val: number } | undefined;
  for (const ratio of GRIDS[method] ?? []) {
    const val = valMean(task, `${method} x${ratio}`);
    if (Number.isFinite(val) && (!best || val > best.val)) best = { ratio, val };
  }
  return best?.ratio;
}

/** Whether the chosen ratios are one grid point or adjacent ones on every task. */
export function transfers(method: string, chosen: readonly (number | undefined)[]): boolean {
  const grid = GRIDS[method] ?? [];
  const idx = chosen.map((r) => (r === undefined ? -1 : grid.indexOf(r)));
  return !idx.includes(-1) && Math.max(...idx) - Math.min(...idx) <= 1;
}

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** Per method and ratio: validation % and the paired test difference to fine-tuning, on each task. */
export function ratioTable(tasks: TaskData[]): string {
  const rows: string[][] = [[REFERENCE, '-', ...tasks.flatMap((t) => [pct(valMean(t, REFERENCE)), `test ${testCell(t, REFERENCE)}`])]];
  for (const [method, grid] of Object.entries(GRIDS)) {
    for (const ratio of grid) {
      const label = `${method} x${ratio}`;
      rows.push([method, String(ratio), ...tasks.flatMap((t) => {
        const star = chosenRatio(t, method) === ratio ? ' **(chosen)**' : '';
        return [`${pct(valMean(t, label))}${star}`, pairedCell(t, label)];
      })]);
    }
  }
  return table(['method', 'alpha / alpha_max', ...tasks.flatMap((t) => [`${t.title}: val %`, 'test - fine-tune'])], rows);
}

/** Per method: the ratio chosen on each task, whether it transfers, and the first task's choice on the others. */
export function transferTable(tasks: TaskData[]): string {
  const rows = Object.keys(GRIDS).map((method) => {
    const chosen = tasks.map((t) => chosenRatio(t, method));
    const first = chosen[0];
    return [method, ...chosen.map((r) => (r === undefined ? '-' : String(r))), transfers(method, chosen) ? 'yes' : 'no',
      ...tasks.slice(1).map((t) => (first === undefined ? '-' : pairedCell(t, `${method} x${first}`))),
      ...tasks.map((t, i) => (chosen[i] === undefined ? '-' : pairedCell(t, `${method} x${chosen[i]}`)))];
  });
  return table(['method', ...tasks.map((t) => `chosen on ${t.id}`), 'same or adjacent on all',
    ...tasks.slice(1).map((t) => `first task's ratio on ${t.id}: test - FT`), ...tasks.map((t) => `own choice on ${t.id}: test - FT`)], rows);
}

/** Facts of a label's trials' stages with a stability estimate, over seeds. */
function estimated(task: TaskData, label: string): StageFacts[][] {
  return completed(task, label).map((r) => (task.facts.get(r.trialId)?.stages ?? []).filter((s) => s.alphaRatio !== undefined));
}

/** Labels compared with each other, one row each, paired with fine-tuning on every task. */
export function comparisonTable(tasks: TaskData[], labels: string[], extra?: { header: string; cell: (t: TaskData, label: string) => string }): string {
  const rows = labels.map((label) => [label, ...tasks.flatMap((t) => [testCell(t, label), pairedCell(t, label), ...(extra ? [extra.cell(t, label)] : [])])]);
  return table(['schedule', ...tasks.flatMap((t) => [`${t.id}: test %`, 'test - FT (paired)', ...(extra ? [extra.header] : [])])], rows);
}

/** alpha / alpha_max of each estimated stage, mean over seeds ("0.03; 0.03" for two stages). */
export function ratioCell(task: TaskData, label: string): string {
  const stages = estimated(task, label);
  if (!stages.length || !stages[0]!.length) return '-';
  return stages[0]!.map((_, i) => Number(meanOf(stages.map((s) => s[i]?.alphaRatio ?? NaN)).toPrecision(2))).join('; ');
}

/** lambda_max and alpha_max (= alpha / ratio) of each estimated stage, mean over seeds. */
export function limitCell(task: TaskData, label: string): string {
  const stages = estimated(task, label);
  if (!stages.length || !stages[0]!.length) return '-';
  return stages[0]!.map((_, i) => {
    const lambda = meanOf(stages.map((s) => s[i]?.lambdaMax ?? NaN));
    const alphaMax = meanOf(stages.map((s) => (s[i]?.alpha ?? NaN) / (s[i]?.alphaRatio ?? NaN)));
    return `${lambda.toExponential(1)} (${alphaMax.toExponential(1)})`;
  }).join('; ');
}

/** Did it blow up (the criterion: studies/shared.ts `blowUp`), and why. */
export function blowUpCell(task: TaskData, label: string, smallestLabel: string): string {
  const early = (l: string) => meanOf(estimated(task, l).map((stages) => Math.max(...stages.map((s) => (s.first ?? NaN) / (s.alphaRatio ?? NaN)))));
  const rs = completed(task, label);
  if (!rs.length) return '-';
  const growth = early(label) / early(smallestLabel);
  const { blew, diverged, collapsed } = blowUp(rs.map((r) => ({ ...r.metrics, stages: task.facts.get(r.trialId)?.stages ?? [] })), growth);
  return `${blew ? 'yes' : 'no'} (step-3 term/ratio ${Number.isFinite(growth) ? growth.toFixed(1) : '-'}x the smallest ratio's` +
    `${diverged ? `, ${diverged} diverged` : ''}${collapsed ? `, ${collapsed} val collapsed` : ''})`;
}

/** Relative entropy (H / H_max) per aligned layer at the end of the last stage with attention, mean over seeds. */
export function entropyCell(task: TaskData, label: string): string {
  const rs = completed(task, label);
  const last = (r: TrialRecord) => {
    const stages = (r.attention ?? []).map((a) => a.stage);
    const stage = Math.max(...stages);
    return (r.attention ?? []).filter((a) => a.stage === stage);
  };
  const layers = rs.length ? last(rs[0]!).map((a) => a.layer) : [];
  if (!layers.length) return '-';
  return layers.map((layer) => meanOf(rs.map((r) => {
    const a = last(r).find((x) => x.layer === layer);
    return a && a.maxEntropy > 0 ? a.entropy / a.maxEntropy : NaN;
  })).toFixed(2)).join(' / ');
}

/**
 * The channel attention against each channel's discrepancy, per aligned layer, mean over seeds:
 * Spearman's rho between weight and discrepancy (< 0: more weight on channels whose target still
 * matches the source) and the discrepancy percentile of the most-weighted channel (0 = the
 * best-matching channel, 100 = the most different).
 */
export function channelRankCell(task: TaskData, label: string): string {
  const layers = new Map<string, { rho: number[]; percentile: number[] }>();
  for (const r of completed(task, label)) {
    for (const stage of task.facts.get(r.trialId)?.stages ?? []) {
      for (const c of stage.channels ?? []) {
        const entry = layers.get(c.layer) ?? { rho: [], percentile: [] };
        entry.rho.push(spearman(c.weight, c.discrepancy));
        const top = c.weight.indexOf(Math.max(...c.weight));
        const below = c.discrepancy.filter((d) => d < c.discrepancy[top]!).length;
        entry.percentile.push((100 * below) / Math.max(1, c.discrepancy.length - 1));
        layers.set(c.layer, entry);
      }
    }
  }
  if (!layers.size) return '-';
  return [...layers.values()].map((e) => `${meanOf(e.rho).toFixed(2)} (${meanOf(e.percentile).toFixed(0)})`).join(' / ');
}

/**
 * Issue 16's first question: does training blow up from alpha/alpha_max ~ 1, alpha_max being the
 * step-size stability limit the worker estimates at the start of each aligning stage? A grid of
 * relative strengths {0.03, 0.1, 0.3, 0.7, 1.5, 5, 15, 50} for feature-map, DELTA, AST, ACT and two-stage AFA
 * (both stages at the same ratio), with fine-tuning as the paired reference, on Fashion-MNIST ->
 * MNIST (10 labels/class), the study's scale (small ResNet width 16, 300 steps at lr 0.05).
 *
 *   node_modules/.bin/tsx studies/stability.ts [--seeds 0,1,2] [--workers 2] [--out DIR] [--report-only]
 *
 * Resumable (finished trials are skipped). Writes `results.jsonl`, `sweep.json` and `growth.json`
 * (per trial and stage: the worker's alpha ratio and lambda, alpha x Omega at its first logged step,
 * its peak and its last value) into docs/reproduction/stability-fashion-to-mnist-10/, and the table
 * docs/reproduction/stability.md.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { afa, baseline, relative, sweep, variants, type ScheduleStep } from '../ts-sdk/src/index.js';
import { latestByTrial, planSlots, readRecords, runSweep, type TrialRecord } from '../ts-sdk/src/sweep/index.js';
import { SweepProgress } from '../ts-sdk/src/report/sweep-progress.js';
import { baseExperiment, FULL, LR, TASKS } from './reproduce/study.js';
import { blowUp, pairedDifference, stageFacts, type RunResultFacts } from './shared.js';

/** The issue's grid, then further out to find where (if anywhere) training does blow up. */
export const RATIOS = [0.03, 0.1, 0.3, 0.7, 1.5, 5, 15, 50] as const;
const ID = 'stability-fashion-to-mnist-10';
/** n = seeds x ...: the table's ± is the std over seeds. */
const DOCS = join('docs', 'reproduction', ID);
const LOG_EVERY = 3;

const one = { iterations: FULL.iterations, lr: LR, logEvery: LOG_EVERY };
export const STABILITY_METHODS: Record<string, (ratio: number) => ScheduleStep[]> = {
  'feature-map': (r) => baseline.featureMap({ ...one, alpha: relative(r) }),
  DELTA: (r) => baseline.delta({ ...one, alpha: relative(r) }),
  AST: (r) => baseline.afaSpatial({ ...one, alpha: relative(r) }),
  ACT: (r) => baseline.afaChannel({ ...one, alpha: relative(r) }),
  AFA: (r) => afa({
    spatial: { alpha: relative(r), iterations: FULL.iterations / 2, lr: LR, logEvery: LOG_EVERY },
    channel: { alpha: relative(r), iterations: FULL.iterations / 2, lr: LR / 10, logEvery: LOG_EVERY },
  }),
};

export function stabilitySweep(seeds: number[]) {
  const options: Record<string, Record<string, unknown>> = { 'fine-tune (reference)': { schedule: baseline.fineTune(one) } };
  for (const [method, schedule] of Object.entries(STABILITY_METHODS)) {
    for (const ratio of RATIOS) options[`${method} x${ratio}`] = { schedule: schedule(ratio) };
  }
  return sweep({ name: ID, base: baseExperiment(TASKS[0]!, FULL, ID), space: { method: variants(options) }, seeds, metric: 'bestValAccuracy' });
}

export interface StageGrowth { stage: string; alphaRatio: number; lambdaMax: number; first: number; peak: number; peakStep: number; last: number; status: string }
export interface TrialGrowth { trialId: string; label: string; seed: number; stages: StageGrowth[] }

/** alpha x Omega over each aligning stage of each trial's run record (growth.json's form of the shared stage facts). */
function growthOf(outDir: string, records: TrialRecord[]): TrialGrowth[] {
  return records.flatMap((record) => {
    const file = join(outDir, 'runs', record.trialId, 'result.json');
    if (!existsSync(file)) return [];
    const facts = stageFacts(record.trialId, (JSON.parse(readFileSync(file, 'utf8')) as { result: RunResultFacts }).result);
    const stages = facts.stages.filter((s) => s.alphaRatio !== undefined).map((s) => ({ stage: s.name, alphaRatio: s.alphaRatio!,
      lambdaMax: s.lambdaMax!, first: s.first ?? NaN, peak: s.peak ?? NaN, peakStep: s.peakStep ?? 0, last: s.last ?? NaN, status: s.status }));
    return [{ trialId: record.trialId, label: record.labels.method ?? '', seed: record.seed, stages }];
  });
}

const pct = (x: number) => (100 * x).toFixed(1);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => (xs.length > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)) : 0);

/** The table; blown up by the shared criterion (studies/shared.ts `blowUp`). */
export function stabilityTable(records: TrialRecord[], growth: TrialGrowth[]): string {
  const reference = new Map(records.filter((r) => r.labels.method === 'fine-tune (reference)').map((r) => [r.seed, r]));
  const lines = [
    `| method | alpha/alpha_max | lambda_max | val % | test % | test - fine-tune (paired) | alpha x Omega at step ${LOG_EVERY} -> peak (step) | step-${LOG_EVERY} value / ratio, vs smallest ratio | blew up |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  const labels = [...new Set(records.map((r) => r.labels.method ?? ''))];
  const earlyPerRatio = (label: string) => {
    const g = growth.filter((t) => t.label === label);
    return g.length ? mean(g.map((t) => Math.max(...t.stages.map((st) => st.first / st.alphaRatio)))) : NaN;
  };
  for (const label of labels) {
    const rs = records.filter((r) => r.labels.method === label && r.status === 'completed');
    if (!rs.length) continue;
    const method = label.replace(/ x[\d.]+$/, '');
    const smallest = `${method} x${RATIOS[0]}`;
    const tests = rs.map((r) => r.metrics.testAccuracy ?? NaN);
    const paired = pairedDifference(new Map(rs.map((r) => [r.seed, r.metrics.testAccuracy ?? NaN])),
      new Map([...reference].map(([seed, r]) => [seed, r.metrics.testAccuracy ?? NaN])));
    const g = growth.filter((t) => t.label === label);
    const relativeEarly = earlyPerRatio(label) / earlyPerRatio(smallest);
    const peaks = g[0]?.stages.map((_, i) => {
      const ss = g.map((t) => t.stages[i]!);
      return `${mean(ss.map((x) => x.first)).toPrecision(2)} -> ${mean(ss.map((x) => x.peak)).toPrecision(2)} (${ss.map((x) => x.peakStep).join('/')})`;
    }).join('; ') ?? '-';
    const byTrial = new Map(g.map((t) => [t.trialId, t]));
    const { blew, diverged, collapsed } = blowUp(rs.map((r) => ({ ...r.metrics,
      stages: (byTrial.get(r.trialId)?.stages ?? []).map((x) => ({ name: x.stage, status: x.status, alphaRatio: x.alphaRatio, first: x.first })) })),
    relativeEarly);
    const ratios = g.flatMap((t) => t.stages.map((x) => x.alphaRatio));
    const lambdas = g.flatMap((t) => t.stages.map((x) => x.lambdaMax));
    lines.push(`| ${method} | ${ratios.length ? Number(mean(ratios).toPrecision(2)) : '-'} | ${lambdas.length ? mean(lambdas).toExponential(1) : '-'} | ` +
      `${pct(mean(rs.map((r) => r.metrics.bestValAccuracy)))} | ${pct(mean(tests))} ± ${pct(sd(tests))} | ` +
      `${paired && label !== 'fine-tune (reference)' ? `${pct(paired.mean)} ± ${pct(paired.std)}` : '-'} | ${peaks} | ` +
      `${Number.isFinite(relativeEarly) ? relativeEarly.toFixed(1) : '-'} | ` +
      `${g.length && g.some((t) => t.stages.length) ? `${blew ? 'yes' : 'no'}${diverged ? `, ${diverged} diverged` : ''}${collapsed ? `, ${collapsed} val collapsed` : ''}` : '-'} |`);
  }
  return lines.join('\n');
}

function report(outDir: string): void {
  const records = latestByTrial(readRecords(join(outDir, 'results.jsonl')).records);
  const growth = growthOf(outDir, records);
  mkdirSync(DOCS, { recursive: true });
  for (const file of ['results.jsonl', 'sweep.json']) copyFileSync(join(outDir, file), join(DOCS, file));
  if (growth.length) writeFileSync(join(DOCS, 'growth.json'), `${JSON.stringify(growth, null, 1)}\n`);
  const committed = existsSync(join(DOCS, 'growth.json')) ? (JSON.parse(readFileSync(join(DOCS, 'growth.json'), 'utf8')) as TrialGrowth[]) : [];
  const text = stabilityTable(records, growth.length ? growth : committed);
  writeFileSync(join('docs', 'reproduction', 'stability.md'),
    `# Alignment strength against the stability limit (Fashion-MNIST -> MNIST, 10 labels/class)\n\n` +
    `Made by \`node_modules/.bin/tsx studies/stability.ts\` from [${ID}/](${ID}/): seeds ` +
    `${[...new Set(records.map((r) => r.seed))].sort((a, b) => a - b).join(', ')}; small ResNet width 16, 300 steps at lr ${LR} (AFA: 150 + 150, stage II at lr ${LR / 10}), ` +
    `alpha x Omega logged every ${LOG_EVERY} steps.\n\n${text}\n`);
  console.log(text);
}

const isMain = process.argv[1]?.endsWith('stability.ts');
if (isMain) {
  const { values: args } = parseArgs({ options: { seeds: { type: 'string', default: '0' }, workers: { type: 'string', default: '2' },
    out: { type: 'string', default: join('afa-sweeps', ID) }, 'report-only': { type: 'boolean', default: false } } });
  const outDir = args.out!;
  if (!args['report-only']) {
    const progress = new SweepProgress();
    await runSweep(stabilitySweep(args.seeds!.split(',').map(Number)), {
      outDir, resume: true, slots: planSlots({ local: Number(args.workers) }), onEvent: (e) => progress.handle(e) });
    progress.close();
  }
  if (existsSync(join(outDir, 'results.jsonl')) && readdirSync(outDir).length) report(outDir);
}

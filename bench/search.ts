/**
 * `make bench-search`: what the searchers and ASHA buy on one fixed task and space.
 *
 * The task: the demo's (Fashion-MNIST source -> MNIST, 10 labels per class, 10 for validation),
 * small ResNet width 8, 90 steps evaluated every 10. The space: method x strength (6 variants:
 * fine-tuning, L2-SP 1e-3, feature-map and DELTA at 0.01x and 0.1x the stability limit) x lr
 * {0.01, 0.02, 0.05, 0.1}: 24 configurations, one seed.
 *
 * 1. The grid is run for real, on 2 local workers (every configuration's learning curve and time).
 * 2. The searchers are then run on that landscape as a tabular benchmark (NAS-Bench's method): fake
 *    slots replay each configuration's real validation curve, so random and TPE (real Optuna, 3
 *    search seeds each, 12 configurations each) and ASHA (real Optuna pruning) see exactly what a
 *    real run would, at no training cost. Compute is counted from the measured trial times (a trial
 *    pruned at step s costs s/90 of its measured time).
 *
 * Prints the best validation accuracy after n distinct configurations (grid in its order; random and
 * TPE, mean over search seeds; a configuration a search draws again adds nothing, so its curve holds), and ASHA vs no pruning: configurations per hour and the best found
 * within the same compute. Writes bench/out/search.json and bench/out/search.svg.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backbone, baseline, data, experiment, grid, pretrain, relative, sweep, variants, type ExperimentSpec } from '../ts-sdk/src/index.js';
import { planSlots, runSweep, type TrialRecord } from '../ts-sdk/src/sweep/index.js';
import { formatTable } from '../ts-sdk/src/report/index.js';
import { xyChart } from '../ts-sdk/src/report/svg.js';
import { fakeSlots } from '../test/fixtures/fake-slots.js';
import { tempDir } from '../test/helpers.js';

const STEPS = 90;
const EVERY = 10;
const log = (line: string) => process.stderr.write(`${line}\n`);

const base = experiment({
  name: 'bench-search',
  backbone: backbone.smallResNet({ width: 8 }),
  source: pretrain({ data: data.fashionMnist({ testPerClass: 100 }), iterations: 600, batchSize: 128, lr: 0.05 }),
  target: data.mnist({ labelsPerClass: 10, valPerClass: 10 }),
  schedule: baseline.fineTune({ iterations: STEPS, evalEvery: EVERY, lr: 0.05 }),
});
const stage = { iterations: STEPS, evalEvery: EVERY, lr: 0.05 };
const space = {
  method: variants({
    'fine-tune': { schedule: baseline.fineTune(stage) },
    'L2-SP 1e-3': { schedule: baseline.l2sp({ ...stage, alpha: 1e-3 }) },
    'feature-map 0.01x': { schedule: baseline.featureMap({ ...stage, alpha: relative(0.01) }) },
    'feature-map 0.1x': { schedule: baseline.featureMap({ ...stage, alpha: relative(0.1) }) },
    'DELTA 0.01x': { schedule: baseline.delta({ ...stage, alpha: relative(0.01) }) },
    'DELTA 0.1x': { schedule: baseline.delta({ ...stage, alpha: relative(0.1) }) },
  }),
  'schedule[0].optimizer.lr': grid([0.01, 0.02, 0.05, 0.1]),
};

/** The real landscape: each configuration's curve (step -> val accuracy) and measured seconds, by its spec's name. */
type Landscape = Map<string, { curve: Map<number, number>; seconds: number; best: number }>;

function landscapeOf(records: TrialRecord[]): Landscape {
  return new Map(records.map((r) => [r.spec.name, { curve: new Map(r.curve.map((p) => [p.globalStep, p.accuracy])),
    seconds: r.wallSeconds, best: r.metrics.bestValAccuracy }]));
}

/** Best value so far after each configuration, in the order the results file has them. */
const bestSoFar = (records: TrialRecord[]) => records.reduce<number[]>((acc, r) => [...acc, Math.max(acc.at(-1) ?? 0, r.metrics.bestValAccuracy)], []);
/** Measured compute of a replayed trial: its configuration's real time, in proportion to the steps it ran. */
const costOf = (land: Landscape, r: TrialRecord) => land.get(r.spec.name)!.seconds * ((r.curve.at(-1)?.globalStep ?? 0) / STEPS);

async function replay(land: Landscape, search: 'random' | 'tpe', searchSeed: number, budget: number, earlyStop: 'none' | 'asha') {
  const s = sweep({ name: `replay-${search}`, base, space, search, budget, searchSeed, seeds: [0] });
  const curve = (spec: ExperimentSpec, step: number) => land.get(spec.name)?.curve.get(step) ?? 0;
  const outcome = await runSweep(s, { outDir: tempDir('afa-bench-search-'), slots: fakeSlots(2, { started: [], curve }), earlyStop,
    warmupSteps: EVERY });
  return outcome.records;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** Mean of best-so-far curves of different lengths (a sampler's repeat of a configuration adds no new one): each held at its last value. */
const meanCurves = (curves: number[][]) => Array.from({ length: Math.max(...curves.map((c) => c.length)) },
  (_, i) => mean(curves.map((c) => c[Math.min(i, c.length - 1)] ?? 0)));

async function main() {
  mkdirSync('bench/out', { recursive: true });
  log('the grid, for real (24 configurations on 2 local workers) ...');
  const started = performance.now();
  const gridRun = await runSweep(sweep({ name: 'bench-search-grid', base, space, seeds: [0] }),
    { outDir: tempDir('afa-bench-search-grid-'), slots: planSlots({ local: 2, threads: 1 }) });
  const gridSeconds = (performance.now() - started) / 1000;
  const land = landscapeOf(gridRun.records);
  const best = Math.max(...[...land.values()].map((v) => v.best));
  log(`  ${gridRun.records.length} configurations in ${gridSeconds.toFixed(0)} s; best val ${(100 * best).toFixed(1)} %`);

  const seeds = [0, 1, 2];
  const runs: Record<string, TrialRecord[][]> = { random: [], tpe: [], tpeAsha: [] };
  for (const seed of seeds) {
    log(`replays, search seed ${seed}: random, TPE, TPE + ASHA ...`);
    runs.random!.push(await replay(land, 'random', seed, 12, 'none'));
    runs.tpe!.push(await replay(land, 'tpe', seed, 12, 'none'));
    runs.tpeAsha!.push(await replay(land, 'tpe', seed, 24, 'asha'));
  }
  const curves = { grid: bestSoFar(gridRun.records), random: meanCurves(runs.random!.map(bestSoFar)), tpe: meanCurves(runs.tpe!.map(bestSoFar)) };

  // ASHA vs none: configurations per compute hour (2 workers), and the best it found within TPE's compute for 12 configurations.
  const perHour = (records: TrialRecord[]) => records.length / (records.reduce((a, r) => a + costOf(land, r), 0) / 3600 / 2);
  const bestWithin = (records: TrialRecord[], seconds: number) => {
    let spent = 0;
    let found = 0;
    for (const r of records) {
      spent += costOf(land, r);
      if (spent > seconds) break;
      if (r.status === 'completed') found = Math.max(found, r.metrics.bestValAccuracy);
    }
    return found;
  };
  const equal = seeds.map((_, i) => {
    const budget = runs.tpe![i]!.reduce((a, r) => a + costOf(land, r), 0);
    return { none: Math.max(...runs.tpe![i]!.map((r) => r.metrics.bestValAccuracy)), asha: bestWithin(runs.tpeAsha![i]!, budget) };
  });
  const asha = { perHourNone: mean(runs.tpe!.map(perHour)), perHourAsha: mean(runs.tpeAsha!.map(perHour)),
    pruned: mean(runs.tpeAsha!.map((rs) => rs.filter((r) => r.status === 'pruned').length / rs.length)),
    bestNone: mean(equal.map((e) => e.none)), bestAsha: mean(equal.map((e) => e.asha)) };

  const pct = (v: number) => `${(100 * v).toFixed(1)} %`;
  const at = [1, 3, 6, 9, 12];
  console.log(formatTable(['best val after n configurations', ...at.map(String)],
    (['grid', 'random', 'tpe'] as const).map((k) => [k === 'grid' ? 'grid (its order)' : `${k} (mean of 3 search seeds)`,
      ...at.map((n) => pct(curves[k][Math.min(n, curves[k].length) - 1]!))])));
  console.log(`\nthe space's best: ${pct(best)}; the grid took ${gridSeconds.toFixed(0)} s for 24 configurations on 2 workers`);
  console.log(formatTable(['TPE, 2 workers', 'configurations / compute hour', 'best val within the compute of 12 unpruned'],
    [['no pruning (12 configurations)', asha.perHourNone.toFixed(0), pct(asha.bestNone)],
      [`ASHA (budget 24, ${pct(asha.pruned)} pruned)`, asha.perHourAsha.toFixed(0), pct(asha.bestAsha)]]));
  const results = { date: new Date().toISOString(), gridSeconds, best, curves, asha, equal,
    replays: Object.fromEntries(Object.entries(runs).map(([k, rs]) => [k, rs.map((r) => r.map((x) => ({ name: x.spec.name, status: x.status,
      best: x.metrics.bestValAccuracy, steps: x.curve.at(-1)?.globalStep ?? 0 })))])) };
  writeFileSync(join('bench/out', 'search.json'), JSON.stringify(results, null, 2));
  const lo = Math.max(0, Math.floor(10 * Math.min(...Object.values(curves).flat())) / 10);
  const svg = xyChart('best validation accuracy after n configurations (24-configuration space)', { label: 'configurations run', min: 1, max: 12 },
    { label: 'best val accuracy', min: lo, max: Math.min(1, Math.ceil(10 * best) / 10), format: (v) => `${Math.round(100 * v)}%` },
    (['grid', 'random', 'tpe'] as const).map((k) => ({ name: k === 'grid' ? 'grid (its order)' : `${k} (mean of 3 seeds)`, line: true,
      points: Array.from({ length: 12 }, (_, i) => ({ x: i + 1, y: curves[k][Math.min(i, curves[k].length - 1)]! })) })), 'bench-search');
  writeFileSync(join('bench/out', 'search.svg'), svg.toString().replace(/^(<svg[^>]*>)/, '$1<style>text{font:11px sans-serif}.title{font-weight:600}</style>'));
  console.log('written: bench/out/search.json, bench/out/search.svg');
}

await main();

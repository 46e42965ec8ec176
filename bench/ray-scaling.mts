// The cost model of sweeps on Ray (docs/scaling.md): per-trial dispatch overhead (a trial handed to
// a worker until its first training step) on local workers and on Ray actors, and trials per hour
// with 1, 2 and 4 workers, all in one run. Runs a throwaway local Ray cluster, so only inside a
// private network namespace: `make bench-ray`. Writes bench/out/ray-scaling.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { grid, sweep } from '../ts-sdk/src/index.js';
import { planSlots, runSweep, type PoolOptions } from '../ts-sdk/src/sweep/index.js';
import { tinyFineTune } from '../test/fixtures/specs.js';
import { tempDir } from '../test/helpers.js';

const TRIALS = Number(process.env.AFA_BENCH_TRIALS ?? 8);
const STEPS = Number(process.env.AFA_BENCH_STEPS ?? 30);

interface Measure { pool: string; workers: number; trials: number; wallSeconds: number; startSeconds: number;
  trialsPerHour: number; dispatchMs: { median: number; max: number };
  /** CPU time of this (the scheduler's) process per trial and per worker event: what bounds one TS scheduler. */
  sdkCpuMsPerTrial: number; sdkCpuUsPerEvent: number; events: number }

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function measure(pool: string, workers: number, options: PoolOptions): Promise<Measure> {
  const lrs = Array.from({ length: TRIALS }, (_, i) => 0.01 + 0.005 * i);
  const definition = sweep({ name: `scale-${pool}-${workers}`, base: tinyFineTune(STEPS), space: { 'schedule[0].optimizer.lr': grid(lrs) }, seeds: [0] });
  const handedOver = new Map<string, number>();
  const dispatch: number[] = [];
  let firstTrial = 0;
  let events = 0;
  let cpuAtFirst: NodeJS.CpuUsage | undefined;
  const started = performance.now();
  const outcome = await runSweep(definition, {
    outDir: tempDir(), slots: planSlots(options),
    onEvent: (e) => {
      if (e.type === 'trial-start') {
        handedOver.set(e.trial.trialId, performance.now());
        firstTrial ||= performance.now();
        cpuAtFirst ??= process.cpuUsage();
      }
    },
    onTrialEvent: (trial, event) => {
      events += 1;
      const at = handedOver.get(trial.trialId);
      if (at !== undefined && event.type === 'step' && event.phase === 'transfer') {
        dispatch.push(performance.now() - at);
        handedOver.delete(trial.trialId);
      }
    },
  });
  const wall = (performance.now() - firstTrial) / 1000;
  const cpu = process.cpuUsage(cpuAtFirst);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  if (outcome.records.some((r) => r.status !== 'completed')) throw new Error(`${pool} x${workers}: not every trial completed`);
  return { pool, workers, trials: TRIALS, wallSeconds: wall, startSeconds: (firstTrial - started) / 1000, trialsPerHour: (TRIALS / wall) * 3600,
    dispatchMs: { median: median(dispatch), max: Math.max(...dispatch) },
    sdkCpuMsPerTrial: cpuMs / TRIALS, sdkCpuUsPerEvent: (cpuMs * 1000) / events, events };
}

const results: Measure[] = [];
for (const workers of [1, 2, 4]) {
  results.push(await measure('local', workers, { local: workers, threads: 1 }));
  results.push(await measure('ray', workers, { ray: { address: 'local', workers, threads: 1, localCpus: 4 } }));
}
const rows = results.map((r) => `${r.pool.padEnd(5)} ${String(r.workers).padStart(2)} workers: ${r.trialsPerHour.toFixed(0).padStart(6)} trials/h, ` +
  `dispatch median ${r.dispatchMs.median.toFixed(0)} ms (max ${r.dispatchMs.max.toFixed(0)}), pool start ${r.startSeconds.toFixed(1)} s, ` +
  `${r.trials} trials in ${r.wallSeconds.toFixed(1)} s, SDK CPU ${r.sdkCpuMsPerTrial.toFixed(0)} ms/trial (${r.sdkCpuUsPerEvent.toFixed(0)} us/event)`);
console.log(rows.join('\n'));
for (const workers of [1, 2, 4]) {
  const [local, ray] = ['local', 'ray'].map((p) => results.find((r) => r.pool === p && r.workers === workers)!);
  console.log(`ratio ray/local at ${workers} workers: throughput ${(ray!.trialsPerHour / local!.trialsPerHour).toFixed(2)}x, ` +
    `dispatch ${(ray!.dispatchMs.median / local!.dispatchMs.median).toFixed(2)}x`);
}
mkdirSync(join('bench', 'out'), { recursive: true });
writeFileSync(join('bench', 'out', 'ray-scaling.json'), JSON.stringify({ trials: TRIALS, steps: STEPS, results }, null, 2));

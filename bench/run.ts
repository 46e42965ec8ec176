/**
 * `make bench`: ratios measured in one run on this machine (absolute times only hold on a GPU).
 *
 * - orchestration overhead: a stage's call-to-result time in the SDK vs the compute the worker timed in
 *   the same run, cross-checked against the same stage called in-process (separate runs, noisy);
 * - method cost: AFA steps vs a fine-tuning step, with and without the source feature cache, and the
 *   naive research-code AFA step as a yardstick (bench/python/step_bench.py);
 * - startup: worker spawn to SERVING, session creation, first training step;
 * - sweep scaling: trials per hour with 1 vs 2 local workers on the same trials.
 *
 * Writes bench/out/results.json and prints a table.
 */
import { execa } from 'execa';
import { mkdirSync, writeFileSync, mkdtempSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { backbone, baseline, data, experiment, grid, pretrain, stage, sweep, Worker, noRegularizer } from '../ts-sdk/src/index.js';
import { planSlots, runSweep } from '../ts-sdk/src/sweep/index.js';
import { formatTable } from '../ts-sdk/src/report/index.js';
import { toCreateSessionRequest, toStageMessage } from '../ts-sdk/src/proto.js';
import * as proto from '../ts-sdk/src/proto.js';
import { inference } from './inference.js';
import { dataIn } from './data.js';

const PYTHON = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');
const QUICK = process.env.AFA_BENCH_QUICK === '1';
const THREADS = Math.min(2, cpus().length);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const log = (line: string) => process.stderr.write(`${line}\n`);

const net = backbone.smallResNet({ width: 16 });
const source = pretrain({ data: data.fashionMnist({ testPerClass: 10 }), iterations: QUICK ? 20 : 200, batchSize: 64 });
const target = data.mnist({ labelsPerClass: 10, valPerClass: 10 });

async function overhead(worker: Worker, weights: string) {
  const steps = QUICK ? 20 : 150;
  const stageSpec = stage({ regularizer: noRegularizer(), iterations: steps, evalEvery: 50, logEvery: 10 });
  const session = toCreateSessionRequest({ backbone: net, data: target, seed: 0, sourceWeights: weights });
  const job = join(mkdtempSync(join(tmpdir(), 'afa-bench-')), 'job.json');
  writeFileSync(job, JSON.stringify({ threads: THREADS, repeats: 1, session: proto.CreateSessionRequest.toJSON(session), stage: proto.StageSpec.toJSON(toStageMessage(stageSpec, 0)) }));
  const sdk: number[] = [];
  const inproc: number[] = [];
  // Per SDK round: the stage's own compute as the worker timed it (its wall less the time its loop
  // stood paused handing events over). Both clocks read the same run, so machine noise cancels.
  const compute: number[] = [];
  const rounds = QUICK ? 1 : 5;
  const warm = await worker.createSession({ backbone: net, data: target, sourceWeights: weights, seed: 0 });
  await warm.runStage(stage({ regularizer: noRegularizer(), iterations: 3 })).result;
  await warm.close();
  const inProcess = async () => {
    const out = await execa(PYTHON, ['bench/python/stage_inproc.py', job]);
    inproc.push((JSON.parse(out.stdout.trim().split('\n').at(-1)!) as { walls: number[] }).walls[0]!);
  };
  const viaSdk = async () => {
    const s = await worker.createSession({ backbone: net, data: target, sourceWeights: weights, seed: 0 });
    const started = performance.now();
    const result = await s.runStage(stageSpec).result;
    sdk.push((performance.now() - started) / 1000);
    compute.push(result.wallSeconds - result.deliveryWaitSeconds);
    await s.close();
  };
  for (let r = 0; r < rounds; r++) {
    // interleaved, so drift on a noisy machine hits both sides alike, and in alternating order, so
    // a drift within a round does not always favour the side that ran first
    for (const side of r % 2 === 0 ? [inProcess, viaSdk] : [viaSdk, inProcess]) await side();
    log(`  overhead round ${r + 1}: in-process ${inproc.at(-1)!.toFixed(2)}s, SDK over gRPC ${sdk.at(-1)!.toFixed(2)}s ` +
      `(worker compute ${compute.at(-1)!.toFixed(3)}s)`);
  }
  const sameRun = sdk.map((t, i) => t / compute[i]! - 1);
  // The cross-check pairs the two runs of each round; its range over the rounds is the resolution
  // of that comparison on this machine.
  const ab = sdk.map((t, i) => t / inproc[i]! - 1);
  return { steps, inProcessSeconds: median(inproc), sdkSeconds: median(sdk), overhead: median(sameRun),
    overheadRange: [Math.min(...sameRun), Math.max(...sameRun)], abOverhead: median(ab), abRange: [Math.min(...ab), Math.max(...ab)],
    inproc, sdk, compute };
}

async function startup(weights: string) {
  const samples = [];
  for (let i = 0; i < 2; i++) {
    const t0 = performance.now();
    const worker = await Worker.start({ threads: THREADS });
    const t1 = performance.now();
    const session = await worker.createSession({ backbone: net, data: target, sourceWeights: weights, seed: 0 });
    const t2 = performance.now();
    let firstStep = 0;
    for await (const e of session.runStage(stage({ iterations: 3, logEvery: 1, evalEvery: 0 }))) {
      if (e.type === 'step') {
        firstStep = performance.now();
        break;
      }
    }
    await worker.stop();
    samples.push({ spawnToServing: (t1 - t0) / 1000, sessionCreate: (t2 - t1) / 1000, spawnToFirstStep: (firstStep - t0) / 1000 });
  }
  return { cold: samples[0]!, warm: samples[1]! };
}

async function sweepScaling() {
  const base = experiment({ name: 'bench-scaling', backbone: backbone.smallResNet({ width: 8 }), source, target,
    schedule: baseline.fineTune({ iterations: QUICK ? 10 : 150, evalEvery: 50 }) });
  const s = sweep({ name: 'bench-scaling', base, space: { 'schedule[0].optimizer.lr': grid([0.01, 0.02]) }, seeds: [0, 1] });
  const out: Record<string, number> = {};
  for (const workers of [1, 2]) {
    const dir = mkdtempSync(join(tmpdir(), 'afa-bench-sweep-'));
    const started = performance.now();
    const outcome = await runSweep(s, { outDir: dir, slots: planSlots({ local: workers, threads: Math.max(1, THREADS / workers) }) });
    const hours = (performance.now() - started) / 3_600_000;
    out[`trialsPerHour${workers}`] = outcome.ran / hours;
    log(`  sweep with ${workers} worker(s): ${outcome.ran} trials in ${(hours * 3600).toFixed(1)}s`);
  }
  return { ...out, ratio: out.trialsPerHour2! / out.trialsPerHour1! };
}

async function main() {
  mkdirSync('bench/out', { recursive: true });
  log('method cost (python in-process, step_bench.py) ...');
  const stepArgs = QUICK ? ['--width', '8', '--steps', '12', '--rounds', '1'] : ['--width', '32', '--steps', '30', '--rounds', '5'];
  const step = JSON.parse((await execa(PYTHON, ['bench/python/step_bench.py', ...stepArgs, '--threads', String(THREADS)])).stdout) as {
    seconds_per_step: Record<string, number>; ratios: Record<string, number>; ratio_ranges: Record<string, [number, number]>;
    width: number; precision: string; rounds: number;
  };
  log('orchestration overhead ...');
  const worker = await Worker.start({ threads: THREADS });
  const { path: weights } = await worker.prepareSource(net, source);
  const over = await overhead(worker, weights);
  log('inference: Node onnxruntime vs the worker\'s Predict over gRPC vs PyTorch eager in-process ...');
  const infer = await inference(worker, net, target, weights, THREADS);
  await worker.stop();
  log('startup ...');
  const start = await startup(weights);
  log('sweep scaling ...');
  const scaling = await sweepScaling();
  log('data in: decoding, CreateSession to first step cold vs warm, crop cost ...');
  const images = await dataIn(THREADS, QUICK);

  const results = { date: new Date().toISOString(), machine: `${cpus().length} CPUs (${cpus()[0]?.model ?? '?'})`, threads: THREADS,
    quick: QUICK, methodCost: step, overhead: over, startup: start, sweepScaling: scaling, inference: infer, dataIn: images };
  writeFileSync('bench/out/results.json', JSON.stringify(results, null, 2));
  const r = step.ratios;
  const x = (v: number) => `${v.toFixed(2)}x`;
  // ratio of each method's quietest round, then the range of the ratios within rounds
  const span = (key: string) => `${x(r[key]!)} (${step.ratio_ranges[key]!.map((v) => v.toFixed(2)).join('-')})`;
  const verdict = (key: string, atMost: number) => (r[key]! <= atMost ? 'met' : 'not met');
  const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
  const ms = (v: number) => `${(1000 * v).toFixed(2)} ms`;
  const rows = [
    ['SDK over gRPC: call-to-result vs the worker\'s compute, one stage', `${pct(over.overhead)} (${over.overheadRange.map(pct).join(' to ')})`,
      '< 1 % (design bar < 2 %)', over.overhead < 0.01 ? 'met' : 'not met'],
    ['  cross-check: SDK vs in-process, paired runs', `${pct(over.abOverhead)} (${over.abRange.map(pct).join(' to ')})`, '-',
      over.abRange[0]! <= 0.01 && over.abRange[1]! >= 0.01 ? 'range spans the bar' : over.abOverhead < 0.01 ? 'met' : 'not met'],
    ['AFA spatial step vs fine-tune step', span('afa_spatial_vs_finetune'), '<= 1.35x', verdict('afa_spatial_vs_finetune', 1.35)],
    ['AFA channel step vs fine-tune step', span('afa_channel_vs_finetune'), '<= 1.35x', verdict('afa_channel_vs_finetune', 1.35)],
    ['AFA spatial, cached source maps', span('afa_spatial_cached_vs_finetune'), '<= 1.1x', verdict('afa_spatial_cached_vs_finetune', 1.1)],
    ['AFA channel, cached source maps', span('afa_channel_cached_vs_finetune'), '<= 1.1x', verdict('afa_channel_cached_vs_finetune', 1.1)],
    ['naive AFA step vs ours, both fp32 (speed-up)', span('naive_vs_ours_afa_channel'), '>= 1x on CPU',
      r.naive_vs_ours_afa_channel! >= 1 ? 'met' : 'not met'],
    ['  naive vs ours at precision auto', span('naive_vs_ours_auto'), '-', '-'],
    ['  AFA channel, all fp32 / fine-tune', span('afa_channel_fp32_vs_finetune'), '-', '-'],
    ['  fine-tune bf16 speed-up over fp32', span('finetune_bf16_speedup'), '-', '-'],
    ['  AFA channel / fine-tune, both bf16', span('afa_channel_bf16_vs_finetune_bf16'), '-', '-'],
    ['spawn to first step (warm)', `${start.warm.spawnToFirstStep.toFixed(2)}s`, '< 5 s', start.warm.spawnToFirstStep < 5 ? 'met' : 'not met'],
    ['session creation (warm)', `${start.warm.sessionCreate.toFixed(2)}s`, '-', '-'],
    ['sweep: trials/hour 2 workers vs 1', x(scaling.ratio), '> 1x', scaling.ratio > 1 ? 'met' : 'not met'],
    ['inference batch 1, p50 / p99: Node onnxruntime', `${ms(infer.node.p50)} / ${ms(infer.node.p99)}`, '-', '-'],
    ['  worker Predict over gRPC', `${ms(infer.grpc.p50)} / ${ms(infer.grpc.p99)}`, '-', '-'],
    ['  PyTorch eager in-process', `${ms(infer.eager.p50)} / ${ms(infer.eager.p99)}`, '-', '-'],
    ['inference batch 64, images/s: Node / gRPC / eager', [infer.node, infer.grpc, infer.eager].map((v) => Math.round(v.throughput)).join(' / '), '-', '-'],
    ['  SDK overhead on Predict, batch 1 (p50) / batch 64', `${pct(infer.sdkOverheadBatch1)} / ${pct(infer.sdkOverheadBatch64)}`, '-', '-'],
    ['  Node onnxruntime speed-up over eager, batch 1 / 64', `${x(infer.nodeVsEagerBatch1)} / ${x(infer.nodeVsEagerBatch64)}`, '-', '-'],
    [`decoding JPEGs, images/s: 1 thread / ${THREADS}`, `${Math.round(images.decodePerSecond.single)} / ${Math.round(images.decodePerSecond.parallel)} ` +
      `(${x(images.decodePerSecond.speedup)})`, '> 1x', images.decodePerSecond.speedup > 1 ? 'met' : 'not met'],
    [`CreateSession to first step, ${images.images} JPEGs: cold / warm`, `${images.cold.toFirstStepSeconds.toFixed(2)}s / ` +
      `${images.warm.toFirstStepSeconds.toFixed(2)}s (${x(images.warmSpeedup)})`, '-', '-'],
    ['training step with random crop + flip vs without', pct(images.cropCost), '< 5 %', images.cropCost < 0.05 ? 'met' : 'not met'],
  ];
  console.log(formatTable(['measure', 'value', 'target', ''], rows));
  console.log(`\nstep ratios: of each method's quietest of ${step.rounds} rounds (range of the per-round ratios). ` +
    `precision "auto" here: ${step.precision}; seconds per step, quietest round (width ${step.width}, batch 64, ${THREADS} threads): ` +
    Object.entries(step.seconds_per_step).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', '));
  console.log('written: bench/out/results.json');
}

await main();

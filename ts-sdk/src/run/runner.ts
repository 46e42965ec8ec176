/**
 * Runs an experiment spec on a worker: the source (weights, cached pretraining, or none), one
 * RunStage per stage with promote steps between, the test split once at the end, a checkpoint.
 */
import { join } from 'node:path';
import type { WorkerClient } from '../client/client.js';
import { CancelledError, StageFailedError } from '../errors.js';
import type { ExperimentSpec } from '../dsl/experiment.js';
import { specHash } from '../dsl/experiment.js';
import { noRegularizer } from '../dsl/regularizers.js';
import type { Precision } from '../dsl/precision.js';
import type { PretrainSource } from '../dsl/source.js';
import { sgd, stage } from '../dsl/stage.js';
import { cacheDir, isCached, sourceCachePath } from './cache.js';
import { inSpecTerms, toCreateSessionRequest, type SpecFieldContext } from './convert.js';
import { dataReference, withOrigins, type DataReference } from './datasets.js';
import { AfaError, UnimplementedError } from '../errors.js';
import type { CreateSessionRequest } from '../gen/afa/v1/afa.js';
import type { ExperimentResult, Phase, RunEvent, StageResult } from './events.js';
import { AsyncQueue } from './queue.js';
import { checkAttentionImages, Session } from './session.js';
import { DEFAULT_ATTENTION_IMAGES } from './attention.js';
import { writeRunRecord } from './result-file.js';
import { downloadWeights, uploadWeights, type WeightsAccess } from './weights.js';
import { writeFileAtomically } from '../atomic-write.js';

export interface RunOptions {
  /** Cancels the run within one training step; `result` rejects with `CancelledError`. */
  signal?: AbortSignal;
  /** Cache of pretrained sources and run outputs. @default $AFA_CACHE or ~/.cache/afa-transfer/cache */
  cacheDir?: string;
  /** Where to write the final target model; `false` for none. @default <cacheDir>/runs/<specHash>/target.safetensors */
  checkpoint?: string | false;
  /**
   * Images on which each stage with attention reports where it looks at its end
   * (`StageResult.attentionSnapshot`); 0 for none, at most 16. @default 4
   */
  attentionImages?: number;
  /**
   * Where to write `result.json` (the spec and this result, for `afa report <dir>`); `false` for
   * nowhere. @default <cacheDir>/runs/<specHash>
   */
  resultDir?: string | false;
}

/** A running experiment: typed events as they come, and the typed result. */
export interface ExperimentRun {
  readonly events: AsyncIterable<RunEvent>;
  readonly result: Promise<ExperimentResult>;
}

/** `access`: how the worker reaches weight files ('upload' for a worker that does not share this disk). */
export function runExperiment(client: WorkerClient, spec: ExperimentSpec, options: RunOptions = {}, access: WeightsAccess = 'path'): ExperimentRun {
  const queue = new AsyncQueue<RunEvent>();
  const result = runSchedule(client, spec, options, access, (e) => queue.push(e)).then(
    (r) => {
      queue.end();
      return r;
    },
    (error: unknown) => {
      queue.fail(error);
      throw error;
    },
  );
  result.catch(() => undefined);
  return { events: queue, result };
}

/** The `session` event of a session just created. */
function sessionEvent(phase: 'pretrain' | 'transfer', session: Session, dataSha256?: string): RunEvent {
  const i = session.info;
  return { type: 'session', phase, sessionId: session.id, trainSize: i.trainSize, valSize: i.valSize, testSize: i.testSize,
    layers: i.layers, device: i.device, precision: i.precision, ...(i.sourceSha256 ? { sourceSha256: i.sourceSha256 } : {}),
    ...(dataSha256 || i.dataSha256 ? { dataSha256: dataSha256 || i.dataSha256 } : {}), phases: i.phases, badFilesSkipped: i.badFilesSkipped,
    backbone: i.backbone, inputShape: i.inputShape, memoryFormat: i.memoryFormat, layoutReason: i.layoutReason };
}

/**
 * A session of the request on the worker, its phases (source load, data decode) emitted as progress
 * events while they run; a refusal named as the spec spells it, a refused file by its own path.
 */
export async function openSession(client: WorkerClient, request: CreateSessionRequest, seed: number, phase: Phase, emit: (e: RunEvent) => void,
  context: { data: DataReference; fields: SpecFieldContext; signal?: AbortSignal }): Promise<Session> {
  const explain = (error: unknown) => inSpecTerms(withOrigins(error, context.data.origins), context.fields);
  try {
    for await (const event of client.openSession(request, { signal: context.signal })) {
      const e = event.event;
      if (e?.$case === 'progress') {
        const { phase: activity, ...rest } = e.value;
        emit({ type: 'progress', phase, activity, ...rest });
      } else if (e?.$case === 'created') {
        return new Session(client, e.value, seed);
      }
    }
  } catch (error) {
    if (!(error instanceof UnimplementedError)) throw explain(error);
    // A worker of an earlier version: the session without its progress.
    return new Session(client, await client.createSession(request, { signal: context.signal }).catch((e: unknown) => Promise.reject(explain(e))), seed);
  }
  throw new AfaError('OpenSession: the worker ended the stream without the session');
}

async function runStageTo(session: Session, s: Parameters<Session['runStage']>[0], opts: Parameters<Session['runStage']>[1],
  emit: (e: RunEvent) => void): Promise<StageResult> {
  const run = session.runStage(s, opts);
  for await (const event of run) emit(event);
  const result = await run.result;
  if (result.status !== 'completed') {
    throw new StageFailedError(`stage ${result.name} ${result.status}: ${result.message}`, result.name, result.status);
  }
  return result;
}

/**
 * The pretrained source's weights file: from the cache, or pretrained now and cached. A worker that
 * does not share this disk ('upload') saves it into its weight store, and it is downloaded from there.
 */
export async function obtainSource(client: WorkerClient, spec: Pick<ExperimentSpec, 'backbone' | 'device'> & { precision?: Precision },
  source: PretrainSource, dir: string, signal: AbortSignal | undefined, emit: (e: RunEvent) => void,
  access: WeightsAccess = 'path'): Promise<{ path: string; cached: boolean }> {
  const path = sourceCachePath(dir, spec.backbone, source, spec.precision);
  if (isCached(path)) {
    emit({ type: 'source', phase: 'pretrain', cached: true, path });
    return { path, cached: true };
  }
  const data = await dataReference(client, source.data, access, 'source.data', signal);
  const request = toCreateSessionRequest({ backbone: spec.backbone, data: data.data, seed: source.seed, device: spec.device,
    precision: spec.precision, specJson: JSON.stringify({ pretrain: source, backbone: spec.backbone }) });
  const session = await openSession(client, request, source.seed, 'pretrain', emit, { data, fields: { data: 'source.data' }, signal });
  try {
    emit(sessionEvent('pretrain', session, data.sha256));
    const pretrainStage = stage({
      name: 'pretrain',
      regularizer: noRegularizer({ weightDecay: source.weightDecay }),
      iterations: source.iterations,
      batchSize: source.batchSize,
      optimizer: sgd({ lr: source.lr, momentum: source.momentum }),
      lrSchedule: source.lrSchedule,
      headL2: 0,
      evalEvery: session.info.valSize ? Math.max(1, Math.round(source.iterations / 5)) : 0,
      restoreBest: false,
    });
    await runStageTo(session, pretrainStage, { signal, phase: 'pretrain', index: 0, seed: source.seed }, emit);
    if (access === 'path') {
      await session.saveCheckpoint(path, { signal });
    } else {
      const saved = await session.saveToWeightStore({ signal });
      await downloadWeights(client, saved.sha256, path, signal);
      writeFileAtomically(path.replace(/\.safetensors$/, '.json'), JSON.stringify({ pretrain: source, backbone: spec.backbone,
        sha256: saved.sha256, downloaded_from: client.address, worker_version: '', saved_at: Date.now() / 1000 }, null, 2));
    }
  } finally {
    await session.close().catch(() => undefined);
  }
  emit({ type: 'source', phase: 'pretrain', cached: false, path });
  return { path, cached: false };
}

/** The source as a CreateSession request names it: a path the worker reads, or a hash in its store (uploaded now if missing). */
export async function sourceReference(client: WorkerClient, path: string | undefined, access: WeightsAccess, signal?: AbortSignal):
  Promise<{ sourceWeights?: string; sourceWeightsSha256?: string }> {
  if (!path) return {};
  if (access === 'path') return { sourceWeights: path };
  return { sourceWeightsSha256: (await uploadWeights(client, path, signal)).sha256 };
}

/** Each step of the schedule on the session: its stages (with their results) and promote steps. */
async function runSteps(session: Session, spec: ExperimentSpec, options: RunOptions, emit: (e: RunEvent) => void): Promise<StageResult[]> {
  const { signal } = options;
  const stages: StageResult[] = [];
  for (const [index, step] of spec.schedule.entries()) {
    if (step.kind === 'promoteTargetToSource') {
      emit({ type: 'promote', phase: 'transfer', tensorsCopied: await session.promoteTargetToSource({ signal }) });
    } else {
      stages.push(await runStageTo(session, step, { signal, phase: 'transfer', index, seed: spec.seed, attentionImages: options.attentionImages }, emit));
    }
  }
  return stages;
}

/** The test split, read once after selection (undefined when the spec says not to, or there is none). */
async function testOnce(session: Session, spec: ExperimentSpec, signal: AbortSignal | undefined, emit: (e: RunEvent) => void) {
  if (!spec.evaluateTest || session.info.testSize === 0) return undefined;
  const test = await session.evaluate('test', { signal });
  emit({ type: 'test', phase: 'transfer', ...test });
  return test;
}

/**
 * The whole experiment on the worker: its source, a session on the target, each step of the
 * schedule (stages and promote steps), the test split once, the checkpoint and the run record.
 */
async function runSchedule(client: WorkerClient, spec: ExperimentSpec, options: RunOptions, access: WeightsAccess,
  emit: (e: RunEvent) => void): Promise<ExperimentResult> {
  const { signal } = options;
  checkAttentionImages(options.attentionImages ?? DEFAULT_ATTENTION_IMAGES);
  const started = performance.now();
  const hash = specHash(spec);
  const dir = cacheDir(options.cacheDir);
  try {
    let sourcePath: string | undefined = spec.source.kind === 'weights' ? spec.source.path : undefined;
    let sourceCached = false;
    if (spec.source.kind === 'pretrain') {
      ({ path: sourcePath, cached: sourceCached } = await obtainSource(client, spec, spec.source, dir, signal, emit, access));
    }
    const pretrainDone = performance.now();
    const target = await dataReference(client, spec.target, access, 'target', signal);
    const request = toCreateSessionRequest({ backbone: spec.backbone, data: target.data, seed: spec.seed, device: spec.device,
      precision: spec.precision, ...(await sourceReference(client, sourcePath, access, signal)), specJson: JSON.stringify(spec) });
    const session = await openSession(client, request, spec.seed, 'transfer', emit, { data: target, fields: {}, signal });
    try {
      emit(sessionEvent('transfer', session, target.sha256));
      const stages = await runSteps(session, spec, options, emit);
      const test = await testOnce(session, spec, signal, emit);
      let checkpointPath: string | undefined;
      if (options.checkpoint !== false) {
        const card = { specHash: hash, bestValAccuracy: stages.at(-1)?.bestValAccuracy ?? NaN, testAccuracy: test?.accuracy ?? NaN };
        const saved = await session.saveCheckpoint(options.checkpoint ?? join(dir, 'runs', hash, 'target.safetensors'), { signal, card });
        checkpointPath = saved.path;
        emit({ type: 'checkpoint', phase: 'transfer', path: saved.path, bytes: saved.bytes });
      }
      const finished = performance.now();
      const result: ExperimentResult = {
        name: spec.name, specHash: hash, seed: spec.seed, classNames: session.info.classNames, stages, bestValAccuracy: stages.at(-1)?.bestValAccuracy ?? 0,
        testAccuracy: test?.accuracy, testLoss: test?.loss, checkpointPath, sourcePath, sourceSha256: session.info.sourceSha256 || undefined,
        dataSha256: target.sha256 || session.info.dataSha256 || undefined,
        timings: { totalSeconds: (finished - started) / 1000, pretrainSeconds: (pretrainDone - started) / 1000,
          transferSeconds: (finished - pretrainDone) / 1000, sourceCached },
      };
      if (options.resultDir !== false) writeRunRecord(options.resultDir ?? join(dir, 'runs', hash), { spec, result });
      return result;
    } finally {
      await session.close().catch(() => undefined);
    }
  } catch (error) {
    if (signal?.aborted && !(error instanceof CancelledError)) {
      throw new CancelledError(`experiment ${spec.name} was cancelled`, undefined, { cause: error });
    }
    throw error;
  }
}

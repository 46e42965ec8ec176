/**
 * A session handle: drive stages one by one, branch between them, evaluate, promote, checkpoint.
 * `Worker.run` builds on this; user code can use it directly for custom schedules.
 */
import type { WorkerClient } from '../client/client.js';
import type { CallOptions } from '../client/calls.js';
import { AfaError, CancelledError, NotFoundError, SessionBusyError, UsageError, WorkerCrashedError, WorkerUnavailableError, describeRunning,
  type RunningContext } from '../errors.js';
import { LIMITS } from '../dsl/limits.js';
import { DEFAULT_ATTENTION_IMAGES } from './attention.js';
import { Split, type CreateSessionResponse } from '../gen/afa/v1/afa.js';
import type { StageSpec } from '../dsl/stage.js';
import { inSpecTerms, toStageMessage } from './convert.js';
import type { ModelCard } from '../gen/afa/v1/afa.js';
import type { ImageInput } from '../model/images.js';
import type { Prediction } from '../model/predictions.js';
import { exportOnnxOf, predictOn, type ExportOnnxOptions, type OnnxExport, type PredictCallOptions } from './model-out.js';
import { StageAccumulator, type Phase, type RunEvent, type StageResult } from './events.js';
import { AsyncQueue } from './queue.js';

export type SplitName = 'val' | 'test' | 'train';

/** What a checkpoint's model card says of the experiment besides the session's own facts (NaN or absent: not measured). */
export interface CheckpointCard {
  specHash?: string;
  bestValAccuracy?: number;
  testAccuracy?: number;
}

export interface SavedCheckpoint {
  path: string;
  metadataPath: string;
  bytes: number;
  sha256: string;
  card: ModelCard;
}
const SPLITS: Record<SplitName, Split> = { val: Split.SPLIT_VAL, test: Split.SPLIT_TEST, train: Split.SPLIT_TRAIN };

/** A running stage: its events as they come, and its result when it ends. */
export interface StageHandle extends AsyncIterable<RunEvent> {
  readonly result: Promise<StageResult>;
}

export interface StageRunOptions {
  signal?: AbortSignal;
  /** Seed for stages that do not set one. @default the session's seed */
  seed?: number;
  phase?: Phase;
  index?: number;
  /**
   * Images (the first of each class of the validation split) on which a stage with attention reports where its
   * attention looks at the end, in `StageResult.attentionSnapshot`; 0 for none. At most 16.
   * @default 4
   */
  attentionImages?: number;
}

/** `attentionImages` as given, or a UsageError naming it (`field`: how the caller spelled it, e.g. a CLI flag). */
export function checkAttentionImages(value: number, field = 'attentionImages'): number {
  if (!Number.isInteger(value) || value < 0 || value > LIMITS.attentionImages) {
    throw new UsageError(field, `must be a whole number in [0, ${LIMITS.attentionImages}], got ${value}`);
  }
  return value;
}

export class Session {
  private closed = false;
  private stageCount = 0;

  constructor(
    private readonly client: WorkerClient,
    readonly info: CreateSessionResponse,
    readonly seed: number,
  ) {}

  get id(): string {
    return this.info.sessionId;
  }

  /** What this session runs, for a crash report: its model, input and layout as the worker built them. */
  private running(doing: string): RunningContext {
    return { sessionId: this.id, backbone: this.info.backbone || 'the backbone', inputShape: this.info.inputShape,
      memoryFormat: this.info.memoryFormat || 'layout unknown', doing };
  }

  /** A worker lost mid-call, said with what this session was doing; other errors as they are. */
  private lost(error: unknown, doing: string): unknown {
    if (error instanceof WorkerCrashedError) return error.during(this.running(doing));
    if (error instanceof WorkerUnavailableError) {
      return new WorkerUnavailableError(error.method, error.status, `${error.details} (${describeRunning(this.running(doing))})`, { cause: error });
    }
    return error;
  }

  /** Starts one stage; iterate the handle for events, await `result` for the summary. */
  runStage(stage: StageSpec, options: StageRunOptions = {}): StageHandle {
    if (this.closed) throw new AfaError(`session ${this.id} is closed`);
    const queue = new AsyncQueue<RunEvent>();
    const acc = new StageAccumulator(options.phase ?? 'transfer', stage.name, options.index ?? this.stageCount++);
    const attentionImages = checkAttentionImages(options.attentionImages ?? DEFAULT_ATTENTION_IMAGES);
    const message = toStageMessage(stage, options.seed ?? this.seed, { attentionImages });
    const result = (async () => {
      let summary: StageResult | undefined;
      try {
        for await (const event of this.client.runStage(this.id, message, { signal: options.signal })) {
          const runEvent = acc.toRunEvent(event);
          if (!runEvent) continue;
          queue.push(runEvent);
          if (runEvent.type === 'stage-end') summary = runEvent.result;
        }
      } catch (raw) {
        // A refused field named as the spec spells it: schedule[i]... in a run, the stage's own fields alone.
        const error = this.lost(inSpecTerms(raw, { stage: options.phase === 'pretrain' ? 'source' : options.index === undefined ? '' : `schedule[${options.index}]` }),
          `running stage "${stage.name}"`);
        queue.fail(error);
        throw error;
      }
      queue.end();
      if (!summary) throw new AfaError(`stage ${stage.name}: the worker ended the stream without a summary`);
      if (summary.status === 'cancelled') {
        throw new CancelledError(`stage ${stage.name} was cancelled: ${summary.message}`, 'RunStage');
      }
      return summary;
    })();
    // The result is also observed through the iterator; an unobserved rejection must not crash.
    result.catch(() => undefined);
    return { result, [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator]() };
  }

  async evaluate(split: SplitName, options: CallOptions = {}): Promise<{ loss: number; accuracy: number; count: number }> {
    const response = await this.client.evaluate(this.id, SPLITS[split], options).catch((error: unknown) =>
      Promise.reject(this.lost(error, `evaluating on ${split}`)));
    return { loss: response.loss, accuracy: response.accuracy, count: response.count };
  }

  /** AFA stage-II rule: the frozen source becomes a copy of the current target backbone. */
  async promoteTargetToSource(options: CallOptions = {}): Promise<number> {
    return (await this.client.promoteTargetToSource(this.id, options)).tensorsCopied;
  }

  /**
   * Writes the target model (safetensors + JSON sidecar with the spec), atomically, with its model
   * card (class names, input size, colour, mean/std, eval transform, backbone; `card` adds the
   * experiment's spec hash and metrics).
   */
  async saveCheckpoint(path: string, options: CallOptions & { card?: CheckpointCard } = {}): Promise<SavedCheckpoint> {
    const r = await this.client.saveCheckpoint(this.id, path, options.card, options);
    return { path: r.path, metadataPath: r.metadataPath, bytes: r.bytes, sha256: r.sha256, card: r.card! };
  }

  /** Writes the target into the worker's weight store (for `WorkerClient.getWeights`), returning its sha256. */
  async saveToWeightStore(options: CallOptions & { card?: CheckpointCard } = {}): Promise<{ sha256: string; bytes: number }> {
    const r = await this.client.saveCheckpoint(this.id, undefined, options.card, options);
    return { sha256: r.sha256, bytes: r.bytes };
  }

  /** The target model's predictions for images (encoded bytes or raw pixels), through the run's eval transform. */
  predict(images: ImageInput | readonly ImageInput[], options: PredictCallOptions = {}): Promise<Prediction[]> {
    return predictOn(this.client, this.id, images, options);
  }

  /** Exports the target model to ONNX at `out` (checked on this session's test images), its card beside it. */
  exportOnnx(out: string, options: ExportOnnxOptions = {}): Promise<OnnxExport> {
    return exportOnnxOf(this.client, this.id, out, options);
  }

  /** Frees the session; waits briefly for a just-cancelled stage to release it. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.client.closeSession(this.id, { timeoutMs: 10_000 });
        this.closed = true;
        return;
      } catch (error) {
        if (error instanceof NotFoundError) {
          this.closed = true;
          return;
        }
        if (!(error instanceof SessionBusyError) || attempt >= 100) throw error;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * A checkpoint loaded on a worker to predict (`Worker.loadModel`): its model card, predictions, an
 * ONNX export. It has no data and no source; close it when done.
 */
export class ModelSession {
  private closed = false;

  constructor(private readonly client: WorkerClient, readonly id: string, readonly card: ModelCard, readonly device: string) {}

  predict(images: ImageInput | readonly ImageInput[], options: PredictCallOptions = {}): Promise<Prediction[]> {
    return predictOn(this.client, this.id, images, options);
  }

  /** Exports the model to ONNX at `out`, checked on `checkImages` (random images of the input size without them). */
  exportOnnx(out: string, options: ExportOnnxOptions = {}): Promise<OnnxExport> {
    return exportOnnxOf(this.client, this.id, out, options);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.client.closeSession(this.id, { timeoutMs: 10_000 }).catch((error: unknown) => {
      if (!(error instanceof NotFoundError)) throw error;
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

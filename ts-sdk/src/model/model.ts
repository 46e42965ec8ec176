/**
 * Inference in Node without Python: `loadModel('model.onnx')` runs an exported model with
 * onnxruntime-node (an optional peer dependency), its preprocessing taken from the model card the
 * export put in the file's metadata_props (the same card `afa export` writes beside it as JSON).
 *
 * @example
 * ```ts
 * import { loadModel } from 'afa-transfer';
 * const model = await loadModel('model.onnx');
 * const [p] = await model.predict(await readFile('digit.png'), { topK: 3 });
 * console.log(p.name, p.probability);
 * ```
 */
import { readFile } from 'node:fs/promises';
import { AfaError, UsageError } from '../errors.js';
import { ModelCard } from '../gen/afa/v1/afa.js';
import { checkCard, cardFromOnnx } from './card.js';
import { checkRawImage, decodeImage, isRawImage, MAX_PREDICT_IMAGES, type ImageInput, type RawImage } from './images.js';
import { fromLogits, type Prediction } from './predictions.js';
import { toModelInput } from './transform.js';

/** Pixels an encoded image may have before it is decoded (the worker's bound too). */
export const MAX_IMAGE_PIXELS = 64 * 1024 * 1024;

export interface PredictOptions {
  /** Classes listed per image, best first. @default 5 (at most the number of classes) */
  topK?: number;
}

export interface LoadModelOptions {
  /** onnxruntime execution providers, in order of preference. @default ['cpu'] */
  executionProviders?: string[];
}

interface OrtTensor { data: Float32Array; dims: readonly number[] }
interface OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, unknown>): Promise<Record<string, OrtTensor>>;
  release?(): Promise<void>;
}
interface Ort {
  InferenceSession: { create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: number[]) => unknown;
}

async function onnxruntime(): Promise<Ort> {
  try {
    const ort = (await import('onnxruntime-node' as string)) as Ort & { default?: Ort };
    return ort.InferenceSession ? ort : ort.default!;
  } catch (error) {
    throw new AfaError('loadModel needs the optional peer dependency onnxruntime-node: npm install onnxruntime-node ' +
      '(ONNXRUNTIME_NODE_INSTALL=skip keeps it from downloading the CUDA provider; its CPU binaries are in the package)', { cause: error });
  }
}

/** A model running in this process. */
export class Model {
  private constructor(private readonly ort: Ort, private readonly session: OrtSession, readonly card: ModelCard, readonly path: string) {}

  /** Loads an exported model (`afa export --onnx`) and its model card. */
  static async load(path: string, options: LoadModelOptions = {}): Promise<Model> {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (error) {
      throw new UsageError(path, `cannot read the model: ${(error as Error).message}`);
    }
    const card = cardFromOnnx(bytes, path);
    const ort = await onnxruntime();
    let session: OrtSession;
    try {
      session = await ort.InferenceSession.create(bytes, { executionProviders: options.executionProviders ?? ['cpu'] });
    } catch (error) {
      throw new UsageError(path, `is not a model onnxruntime can run: ${(error as Error).message.split('\n')[0]}`);
    }
    return new Model(ort, session, checkCard(card, path), path);
  }

  /** The class names, in label order. */
  get classNames(): readonly string[] {
    return this.card.classNames;
  }

  /** Predictions for one image or many, in order: logits, probabilities, the top classes with names. */
  async predict(images: ImageInput | readonly ImageInput[], options: PredictOptions = {}): Promise<Prediction[]> {
    const list = Array.isArray(images) ? (images as readonly ImageInput[]) : [images as ImageInput];
    if (list.length > MAX_PREDICT_IMAGES) throw new UsageError('images', `holds ${list.length} images; at most ${MAX_PREDICT_IMAGES} per call`);
    const raw: RawImage[] = [];
    for (const [i, image] of list.entries()) {
      raw.push(isRawImage(image) ? checkRawImage(image, `images[${i}]`) : await decodeImage(image, `images[${i}]`, MAX_IMAGE_PIXELS));
    }
    const t = this.card.transform!;
    const channels = t.color === 'rgb' ? 3 : 1;
    let input: Float32Array;
    try {
      input = toModelInput(raw, t);
    } catch (error) {
      throw new UsageError('images', `cannot be brought to the model's input: ${(error as Error).message}`);
    }
    const feeds = { [this.session.inputNames[0]!]: new this.ort.Tensor('float32', input, [raw.length, channels, t.height, t.width]) };
    const output = (await this.session.run(feeds))[this.session.outputNames[0]!]!;
    return fromLogits(output.data, raw.length, this.card.classNames, options.topK);
  }

  /** Frees onnxruntime's session. */
  async close(): Promise<void> {
    await this.session.release?.();
  }
}

/** Loads an exported model with onnxruntime-node; see {@link Model}. */
export function loadModel(path: string, options: LoadModelOptions = {}): Promise<Model> {
  return Model.load(path, options);
}

/**
 * Predict and ExportOnnx on a worker session (a training session, or LoadModel's inference-only one):
 * images chunked within the request bounds, typed predictions, an export downloaded from the
 * worker's store (verified by hash) with its model card written beside it as JSON.
 */
import { dirname, join, basename } from 'node:path';
import type { WorkerClient } from '../client/client.js';
import type { CallOptions } from '../client/calls.js';
import { writeFileAtomically } from '../atomic-write.js';
import { ModelCard, type InputImage } from '../gen/afa/v1/afa.js';
import { MAX_PREDICT_IMAGES, toInputImage, type ImageInput } from '../model/images.js';
import { fromPredictResponse, type Prediction } from '../model/predictions.js';
import { downloadWeights } from './weights.js';

/** Bytes of images per Predict request, under the 16 MiB message limit. */
const REQUEST_BYTES = 12 * 2 ** 20;

export interface PredictCallOptions extends CallOptions {
  /** Classes listed per image, best first. @default 5 */
  topK?: number;
}

/** The images in requests within the worker's bounds (count and bytes), in order. */
function chunks(images: readonly InputImage[]): InputImage[][] {
  const out: InputImage[][] = [];
  let current: InputImage[] = [];
  let bytes = 0;
  for (const image of images) {
    const size = image.image?.$case === 'raw' ? image.image.value.pixels.length : image.image?.value.length ?? 0;
    if (current.length && (current.length >= Math.min(MAX_PREDICT_IMAGES, 500) || bytes + size > REQUEST_BYTES)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(image);
    bytes += size;
  }
  if (current.length) out.push(current);
  return out;
}

export async function predictOn(client: WorkerClient, sessionId: string, images: ImageInput | readonly ImageInput[],
  options: PredictCallOptions = {}): Promise<Prediction[]> {
  const list = Array.isArray(images) ? (images as readonly ImageInput[]) : [images as ImageInput];
  const messages = list.map((image, i) => toInputImage(image, `images[${i}]`));
  const out: Prediction[] = [];
  let offset = 0;
  for (const chunk of chunks(messages)) {
    try {
      out.push(...fromPredictResponse(await client.predict(sessionId, chunk, options.topK ?? 0, options)));
    } catch (error) {
      throw renumber(error, offset);
    }
    offset += chunk.length;
  }
  return out;
}

/** A refusal naming `images[i]` of a chunk, renamed to the index in the caller's list. */
function renumber(error: unknown, offset: number): unknown {
  if (offset === 0 || !(error instanceof Error)) return error;
  const e = error as Error & { field?: string };
  const match = /^images\[(\d+)\]/.exec(e.field ?? '');
  if (!match) return error;
  const field = e.field!.replace(/^images\[\d+\]/, `images[${Number(match[1]) + offset}]`);
  Object.defineProperty(e, 'field', { value: field });
  e.message = e.message.replace(/^images\[\d+\]/, field);
  return e;
}

export interface OnnxExport {
  /** The .onnx file written, and its model card beside it (`<name>.json`). */
  path: string;
  cardPath: string;
  bytes: number;
  sha256: string;
  card: ModelCard;
  /** max |logit difference| between onnxruntime and PyTorch on the check images (at most 1e-4, or the export is refused). */
  maxAbsDifference: number;
  checkedImages: number;
  checkedOn: string;
  opset: number;
}

export interface ExportOnnxOptions extends CallOptions {
  /** Images to check the export on. @default the session's test split (else val, else train); random images for a loaded model */
  checkImages?: readonly ImageInput[];
  /** @default 18 */
  opset?: number;
}

export async function exportOnnxOf(client: WorkerClient, sessionId: string, out: string, options: ExportOnnxOptions = {}): Promise<OnnxExport> {
  const check = (options.checkImages ?? []).map((image, i) => toInputImage(image, `checkImages[${i}]`));
  const r = await client.exportOnnx(sessionId, check, options.opset ?? 0, options);
  await downloadWeights(client, r.sha256, out, options.signal);
  const cardPath = join(dirname(out), `${basename(out).replace(/\.onnx$/, '')}.json`);
  writeFileAtomically(cardPath, `${JSON.stringify(ModelCard.toJSON(r.card!), null, 2)}\n`);
  return { path: out, cardPath, bytes: r.bytes, sha256: r.sha256, card: r.card!, maxAbsDifference: r.maxAbsDifference,
    checkedImages: r.checkedImages, checkedOn: r.checkedOn, opset: r.opset };
}

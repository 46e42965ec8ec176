/**
 * Images as a prediction takes them: encoded bytes (a Buffer of a PNG, JPEG, ... file) or raw uint8
 * pixels with their shape. The worker decodes encoded images with Pillow; Node inference
 * (`loadModel`) decodes them with sharp, an optional dependency, and needs nothing for raw pixels.
 */
import { UsageError } from '../errors.js';
import type { InputImage } from '../gen/afa/v1/afa.js';

/** uint8 pixels, height x width x channels, row-major; channels 1 (grey), 3 (RGB) or 4 (RGBA, alpha dropped). */
export interface RawImage {
  readonly pixels: Uint8Array;
  readonly height: number;
  readonly width: number;
  readonly channels: 1 | 3 | 4;
}

/** An encoded image file's bytes (PNG, JPEG, BMP, GIF, WebP, TIFF), or raw pixels. */
export type ImageInput = Uint8Array | RawImage;

/** Images one prediction request may carry (the worker's bound; Node inference batches the same way). */
export const MAX_PREDICT_IMAGES = 1024;

export function isRawImage(image: ImageInput): image is RawImage {
  return !(image instanceof Uint8Array) && typeof image === 'object' && image !== null && 'pixels' in image;
}

/** Checks a raw image's shape, naming it (`images[3]`) when it is wrong. */
export function checkRawImage(image: RawImage, field: string): RawImage {
  const { height, width, channels, pixels } = image;
  if (![height, width].every((n) => Number.isInteger(n) && n >= 1 && n <= 16384)) {
    throw new UsageError(field, `height and width must be whole numbers in [1, 16384], got ${height}x${width}`);
  }
  if (![1, 3, 4].includes(channels)) throw new UsageError(`${field}.channels`, `must be 1, 3 or 4, got ${channels}`, ['1', '3', '4']);
  if (!(pixels instanceof Uint8Array) || pixels.length !== height * width * channels) {
    throw new UsageError(`${field}.pixels`, `must hold ${height}x${width}x${channels} = ${height * width * channels} uint8 values, ` +
      `got ${pixels instanceof Uint8Array ? pixels.length : typeof pixels}`);
  }
  return image;
}

/** The contract's form of an image, for the worker's Predict. */
export function toInputImage(image: ImageInput, field: string): InputImage {
  if (isRawImage(image)) {
    const r = checkRawImage(image, field);
    return { image: { $case: 'raw', value: { pixels: Buffer.from(r.pixels.buffer, r.pixels.byteOffset, r.pixels.byteLength), height: r.height, width: r.width, channels: r.channels } } };
  }
  if (!(image instanceof Uint8Array)) throw new UsageError(field, 'must be the bytes of an image file (a Buffer) or { pixels, height, width, channels }');
  return { image: { $case: 'encoded', value: Buffer.from(image.buffer, image.byteOffset, image.byteLength) } };
}

type Sharp = (input: Uint8Array, options?: Record<string, unknown>) => {
  raw(options?: { depth?: string }): { toBuffer(options: { resolveWithObject: true }): Promise<{ data: Buffer; info: { width: number; height: number; channels: number } }> };
  metadata(): Promise<{ width?: number; height?: number }>;
};
let sharp: Sharp | undefined;

/** Encoded bytes as raw pixels, by sharp (an optional dependency: a clear error when it is not installed). */
export async function decodeImage(bytes: Uint8Array, field: string, maxPixels: number): Promise<RawImage> {
  if (!sharp) {
    try {
      sharp = ((await import('sharp' as string)) as { default: Sharp }).default;
    } catch {
      throw new UsageError(field, 'is an encoded image, and decoding one in Node needs the optional package sharp: npm install sharp ' +
        '(raw pixel arrays, { pixels, height, width, channels }, need nothing)');
    }
  }
  try {
    const meta = await sharp(bytes).metadata();
    if ((meta.width ?? 0) * (meta.height ?? 0) > maxPixels) {
      throw new UsageError(field, `has ${meta.width}x${meta.height} pixels, more than the ${maxPixels} an image may have`);
    }
    const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels }).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    const channels = info.channels === 2 ? 1 : info.channels; // grey + alpha: the grey
    const pixels = info.channels === 2 ? data.filter((_, i) => i % 2 === 0) : data;
    return { pixels: new Uint8Array(pixels), height: info.height, width: info.width, channels: channels as 1 | 3 | 4 };
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(field, `is not an image sharp can decode (${(error as Error).message})`);
  }
}

/**
 * Where the attention looks at the end of a stage, typed for a user's own plots, and its JSON form
 * (bytes as base64) for result files and `afa run --json`.
 */
import type { AttentionSnapshot as SnapshotMessage } from '../gen/afa/v1/afa.js';

export type AttentionKind = 'spatial' | 'channel';

export interface AttentionImage {
  label: number;
  /** uint8, height x width x channels, row-major: the data set's image as the network saw it before normalising. */
  pixels: Uint8Array;
}

export interface LayerAttentionSnapshot {
  layer: string;
  kind: AttentionKind;
  /** Spatial: per image, height x width uint8 weights upsampled from the layer's grid, 255 at the image's peak. */
  spatial: Uint8Array[];
  /** The layer's own grid (spatial). */
  mapHeight: number;
  mapWidth: number;
  /** Channel: the weights averaged over the images (sum 1), in channel order. */
  channel: number[];
  /** Mean entropy of the per-image distributions (nats) and the uniform maximum. */
  entropy: number;
  maxEntropy: number;
  /** Per image: the largest weight over the uniform weight (1 = uniform). The uint8 maps are scaled to each image's peak. */
  peakOverUniform: number[];
}

export interface AttentionSnapshot {
  /** Which split the images come from, the first of each class ("val", else "train"). */
  split: string;
  height: number;
  width: number;
  channels: number;
  images: AttentionImage[];
  layers: LayerAttentionSnapshot[];
}

/** Default images per snapshot: enough to see a pattern, a few KB per stage at 28x28. */
export const DEFAULT_ATTENTION_IMAGES = 4;

export function fromSnapshotMessage(m: SnapshotMessage | undefined): AttentionSnapshot | undefined {
  if (!m || !m.images.length) return undefined;
  return {
    split: m.split,
    height: m.height,
    width: m.width,
    channels: m.channels,
    images: m.images.map((i) => ({ label: i.label, pixels: new Uint8Array(i.pixels) })),
    layers: m.layers.map((l) => ({
      layer: l.layer,
      kind: l.kind === 'channel' ? 'channel' : 'spatial',
      spatial: l.spatial.map((b) => new Uint8Array(b)),
      mapHeight: l.mapHeight,
      mapWidth: l.mapWidth,
      channel: [...l.channel],
      entropy: l.entropy,
      maxEntropy: l.maxEntropy,
      peakOverUniform: [...l.peakOverUniform],
    })),
  };
}

const BYTES_TAG = 'base64:';

/** JSON.stringify replacer: byte arrays as "base64:..." strings (a snapshot is a few KB, not a list of numbers). */
export function bytesReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return BYTES_TAG + Buffer.from(value).toString('base64');
  // Buffer.toJSON runs before the replacer sees a Buffer
  if (value && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return BYTES_TAG + Buffer.from((value as { data: number[] }).data).toString('base64');
  }
  return value;
}

/** JSON.parse reviver undoing {@link bytesReplacer}. */
export function bytesReviver(_key: string, value: unknown): unknown {
  if (typeof value === 'string' && value.startsWith(BYTES_TAG)) return new Uint8Array(Buffer.from(value.slice(BYTES_TAG.length), 'base64'));
  return value;
}

/**
 * Where the attention looks at the end of a stage, typed for a user's own plots, and its JSON form
 * (bytes as base64) for result files and `afa run --json`.
 */
import type {
  AttentionImage as ImageMessage,
  AttentionSnapshot as SnapshotMessage,
  LayerAttentionSnapshot as LayerMessage,
} from '../gen/afa/v1/afa.js';

export type AttentionKind = 'spatial' | 'channel';

/**
 * The contract's messages (fields documented in proto/afa/v1/afa.proto), with plain byte arrays:
 * `pixels` is height x width x channels uint8, each `spatial` entry height x width uint8.
 */
export type AttentionImage = Omit<ImageMessage, 'pixels'> & { pixels: Uint8Array };
export type LayerAttentionSnapshot = Omit<LayerMessage, 'kind' | 'spatial'> & { kind: AttentionKind; spatial: Uint8Array[] };
export type AttentionSnapshot = Omit<SnapshotMessage, 'images' | 'layers'> & { images: AttentionImage[]; layers: LayerAttentionSnapshot[] };

/** Default images per snapshot: enough to see a pattern, a few KB per stage at 28x28. */
export const DEFAULT_ATTENTION_IMAGES = 4;

export function fromSnapshotMessage(m: SnapshotMessage | undefined): AttentionSnapshot | undefined {
  if (!m || !m.images.length) return undefined;
  return {
    ...m,
    images: m.images.map((i) => ({ ...i, pixels: new Uint8Array(i.pixels) })),
    layers: m.layers.map((l) => ({
      ...l,
      kind: l.kind === 'channel' ? 'channel' : 'spatial',
      spatial: l.spatial.map((b) => new Uint8Array(b)),
      channel: [...l.channel],
      peakOverUniform: [...l.peakOverUniform],
      channelDiscrepancy: [...l.channelDiscrepancy],
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

/**
 * The model card (proto ModelCard): what inference needs, travelling with the weights. Read here from
 * an ONNX file's metadata_props (ModelProto field 14, key "afa_model_card", the card's proto3 JSON)
 * or from the JSON written beside it, and checked for what a prediction needs.
 */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { UsageError } from '../errors.js';
import { ModelCard } from '../gen/afa/v1/afa.js';

/** The key of the card in a checkpoint's safetensors metadata and an ONNX model's metadata_props. */
export const CARD_KEY = 'afa_model_card';
/** ModelProto.metadata_props and StringStringEntryProto's key and value (onnx/onnx.proto). */
const METADATA_PROPS = 14;

/** The card in an ONNX model's metadata_props; a UsageError naming the file when there is none. */
export function cardFromOnnx(bytes: Uint8Array, file: string): ModelCard {
  let text: string | undefined;
  try {
    const reader = new BinaryReader(bytes);
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field !== METADATA_PROPS) {
        reader.skip(wireType);
        continue;
      }
      const entry = new BinaryReader(reader.bytes());
      let key = '';
      let value = '';
      while (entry.pos < entry.len) {
        const [f, w] = entry.tag();
        if (f === 1) key = entry.string();
        else if (f === 2) value = entry.string();
        else entry.skip(w);
      }
      if (key === CARD_KEY) text = value;
    }
  } catch (error) {
    throw new UsageError(file, `is not an ONNX model (${(error as Error).message})`);
  }
  if (text === undefined) {
    throw new UsageError(file, 'has no model card in its metadata (export it with `afa export --onnx`, which puts one there): ' +
      'without it the class names, input size, colour, mean/std and eval transform are unknown');
  }
  return parseCard(text, file);
}

export function parseCard(text: string, where: string): ModelCard {
  try {
    return checkCard(ModelCard.fromJSON(JSON.parse(text)), where);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(where, `has a model card that is not readable JSON (${(error as Error).message})`);
  }
}

/** The card, or a UsageError naming what a prediction needs and the card lacks. */
export function checkCard(card: ModelCard, where: string): ModelCard {
  const t = card.transform;
  const missing = [
    !card.classNames.length && 'class names',
    !t && 'eval transform',
    t && !(t.height && t.width) && 'input size',
    t && !(t.mean.length && t.std.length) && 'mean/std',
    t && !['rgb', 'grayscale'].includes(t.color) && 'colour',
  ].filter(Boolean);
  if (missing.length) throw new UsageError(where, `has a model card that lacks ${missing.join(', ')}`);
  return card;
}

/** The pretrained-source cache: keyed by the hash of everything that produced the weights. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from '../paths.js';
import type { BackboneSpec } from '../dsl/backbone.js';
import { contentHash } from '../dsl/hash.js';
import type { Precision } from '../dsl/precision.js';
import type { PretrainSource } from '../dsl/source.js';

export { cacheDir };

/**
 * The identity of a pretrained source: the hash of everything that produced its weights. Layers do
 * not change the weights; everything else about the backbone does, and so does the precision it
 * trained in (an absent precision, "auto", leaves the keys of earlier caches as they were). The one
 * key of the cache and of a sweep's pretrain-once step.
 */
export function sourceKey(backbone: BackboneSpec, source: PretrainSource, precision?: Precision): string {
  return contentHash({ v: 1, backbone: { ...backbone, layers: undefined }, source, precision: precision === 'auto' ? undefined : precision });
}

export function sourceCachePath(dir: string, backbone: BackboneSpec, source: PretrainSource, precision?: Precision): string {
  return join(dir, 'sources', `${backbone.name.replace(/[^A-Za-z0-9_-]/g, '_')}-${sourceKey(backbone, source, precision)}.safetensors`);
}

export function isCached(path: string): boolean {
  return existsSync(path) && existsSync(path.replace(/\.safetensors$/, '.json'));
}

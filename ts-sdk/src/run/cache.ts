/** The pretrained-source cache: keyed by the hash of everything that produced the weights. */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afaHome } from '../paths.js';
import type { BackboneSpec } from '../dsl/backbone.js';
import { contentHash } from '../dsl/hash.js';
import type { Precision } from '../dsl/precision.js';
import type { PretrainSource } from '../dsl/source.js';

/** @default $AFA_CACHE, else ~/.cache/afa-transfer/cache */
export function cacheDir(explicit?: string): string {
  return resolve(explicit ?? process.env.AFA_CACHE ?? join(afaHome(), 'cache'));
}

export function sourceCachePath(dir: string, backbone: BackboneSpec, source: PretrainSource, precision?: Precision): string {
  // Layers do not change the weights; everything else about the backbone does, and so does training
  // in bf16 (an absent precision, "auto", leaves the keys of earlier caches as they were).
  const key = contentHash({ v: 1, backbone: { ...backbone, layers: undefined }, source, precision: precision === 'auto' ? undefined : precision });
  return join(dir, 'sources', `${backbone.name.replace(/[^A-Za-z0-9_-]/g, '_')}-${key}.safetensors`);
}

export function isCached(path: string): boolean {
  return existsSync(path) && existsSync(path.replace(/\.safetensors$/, '.json'));
}

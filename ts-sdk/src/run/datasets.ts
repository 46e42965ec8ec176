/**
 * Data sets over the contract, like weights: a worker that shares this disk reads an ImageFolder by
 * path (no copy); one elsewhere gets it packed deterministically (dsl/pack.ts) and uploaded by hash,
 * once per node. A set packed from memory (`data.images`) travels from this machine's pack cache.
 * Every run reports its data set's sha256 (the pack's; for a folder read by path, the hash its
 * pack would have), and a file the worker refuses is named by its path here, not its pack name.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkerClient } from '../client/client.js';
import { SpecError, UsageError } from '../errors.js';
import type { DataSpec, ImageFolderData } from '../dsl/data.js';
import { folderEntries, pack, type Packed } from '../dsl/pack.js';
import { cacheDir } from '../paths.js';
import { ensureUploaded, type WeightsAccess } from './weights.js';

export interface DataReference {
  /** The data as the worker is to read it. */
  data: DataSpec;
  /** The data set's sha256 (undefined for a built-in set). */
  sha256?: string;
  /** Pack member name -> the file it came from, to name a refused file as the user knows it. */
  origins?: Map<string, string>;
}

const packs = new Map<string, Packed>();

/** What identifies a folder's files: their paths, sizes and modification times. */
function identity(root: string): string {
  const parts: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > 3) return;
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const info = statSync(path);
      if (info.isDirectory()) walk(path, depth + 1);
      else parts.push(`${path}\0${info.size}\0${info.mtimeMs}`);
    }
  };
  walk(root, 0);
  return parts.join('\n');
}

/**
 * The folder packed into the cache (`write`), or only the sha256 its pack has: once per content,
 * repeated runs reuse it while the files are unchanged.
 */
export function packFolder(data: ImageFolderData, field: string, write: boolean, dir = cacheDir()): Packed {
  if (!existsSync(data.root) || !statSync(data.root).isDirectory()) throw new UsageError(`${field}.root`, `directory ${data.root} does not exist`);
  const key = `${dir}\0${write}\0${identity(data.root)}`;
  const known = packs.get(key);
  if (known && (!write || existsSync(known.path))) return known;
  const { classNames, entries } = folderEntries(data.root, `${field}.root`);
  const packed = pack(classNames, entries, `${field}.root`, dir, { write });
  packs.set(key, packed);
  return packed;
}

/**
 * The data of a session as the worker is to read it, uploaded first when it does not share this
 * disk. `field` is where the data sits in the spec (`target`, `source.data`).
 */
export async function dataReference(client: WorkerClient, data: DataSpec, access: WeightsAccess, field: string,
  signal?: AbortSignal): Promise<DataReference> {
  if (data.kind === 'imageFolder') {
    // A worker that shares this disk reads the folder itself: only the hash is computed, nothing is copied.
    const packed = packFolder(data, field, access === 'upload');
    if (access === 'path') return { data, sha256: packed.sha256 };
    await ensureUploaded(client, 'datasets', packed.path, `${field}.root`, signal, { sha256: packed.sha256, size: packed.bytes });
    const { root: _root, kind: _kind, ...options } = data;
    return { data: { ...options, kind: 'packed', sha256: packed.sha256 }, sha256: packed.sha256, origins: packed.origins };
  }
  if (data.kind === 'packed') {
    const path = join(cacheDir(), 'datasets', `${data.sha256}.tar`);
    const has = await client.hasDataset(data.sha256, { signal, timeoutMs: 30_000 });
    if (!has.present) {
      if (!existsSync(path)) {
        throw new UsageError(`${field}.sha256`, `the packed data set ${data.sha256.slice(0, 12)}... is neither on the worker nor in this machine's ` +
          `pack cache (${path}): pack it again (data.images or data.imageFolder)`);
      }
      await ensureUploaded(client, 'datasets', path, `${field}.sha256`, signal, { sha256: data.sha256, size: statSync(path).size });
    }
    return { data, sha256: data.sha256 };
  }
  return { data };
}

/** A refusal that names pack members (`train/00003/000017.png`) rewritten to name the files they came from. */
export function withOrigins(error: unknown, origins: Map<string, string> | undefined): unknown {
  if (!origins?.size || !(error instanceof SpecError)) return error;
  const rename = (text: string) => text.replace(/\b(?:train|val|test)\/\d{5}\/\d{6}\.[a-z]+\b/g, (name) => origins.get(name) ?? name);
  if (rename(error.message) === error.message) return error;
  return new SpecError(error.method, rename(error.message), { field: error.field, problem: rename(error.problem), valid: error.valid }, { cause: error });
}

/**
 * Weights over the contract, for workers that do not share the SDK's disk: a file is named by its
 * sha256, uploaded only when the worker's store lacks it, and a source a worker pretrained is
 * downloaded into the SDK's cache, verified by hash, so every worker trains from the same bytes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { WorkerClient } from '../client/client.js';
import { AfaError, ResourceExhaustedError, UnimplementedError, UsageError } from '../errors.js';
import type { WeightsChunk } from '../gen/afa/v1/afa.js';
import { LIMITS } from '../dsl/limits.js';

/** Bytes per chunk: the worker accepts at most 4 MiB (the message limit is 16 MiB). */
export const CHUNK_BYTES = 4 * 2 ** 20;

/** How a worker reaches a weights file: by its path (it shares this disk), or by hash after an upload. */
export type WeightsAccess = 'path' | 'upload';

const hashes = new Map<string, { size: number; mtimeMs: number; sha256: string }>();

/** The file's sha256 (remembered while its size and modification time stay the same). */
export async function fileSha256(path: string): Promise<string> {
  const { size, mtimeMs } = statSync(path);
  const known = hashes.get(path);
  if (known && known.size === size && known.mtimeMs === mtimeMs) return known.sha256;
  const hash = createHash('sha256');
  for await (const block of createReadStream(path, { highWaterMark: CHUNK_BYTES })) hash.update(block as Buffer);
  const sha256 = hash.digest('hex');
  hashes.set(path, { size, mtimeMs, sha256 });
  return sha256;
}

async function* chunksOf(path: string, sha256: string, size: number): AsyncGenerator<WeightsChunk> {
  let first = true;
  for await (const block of createReadStream(path, { highWaterMark: CHUNK_BYTES })) {
    yield { sha256: first ? sha256 : '', totalBytes: first ? size : 0, data: block as Buffer };
    first = false;
  }
  if (first) yield { sha256, totalBytes: 0, data: Buffer.alloc(0) };
}

/** Which store of the worker a file goes to: weight files, or packed data sets. */
export type StoreKind = 'weights' | 'datasets';

/** Longest a client waits for another client's upload of the same bytes to the same node. */
const UPLOAD_WAIT_MS = 30 * 60_000;

const delay = (ms: number, signal?: AbortSignal) => new Promise<void>((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
});

/**
 * Makes the file at `path` (its sha256 given or computed) present in the worker's store, uploading
 * only when the node lacks it. One upload per node: while another client uploads the same bytes
 * there (the worker answers `uploading` / `inProgress`), this one waits for it instead of sending
 * them again.
 */
export function ensureUploaded(client: WorkerClient, store: StoreKind, path: string, field: string, signal?: AbortSignal,
  known?: { sha256: string; size: number }): Promise<{ sha256: string; uploaded: boolean }> {
  // Clients of one process to one node share a connection (gRPC pools them), and the worker bounds
  // uploads per connection: concurrent runs of the same file here join the one upload in flight.
  const key = `${client.address}\0${store}\0${known?.sha256 ?? path}`;
  const running = inFlight.get(key);
  // A joiner whose own signal still stands outlives the first caller's cancellation: it tries again.
  if (running) return running.then((r) => ({ ...r, uploaded: false }), (error: unknown) => {
    if (signal?.aborted || !(running as { cancelled?: boolean }).cancelled) throw error;
    return ensureUploaded(client, store, path, field, signal, known);
  });
  const upload: Promise<{ sha256: string; uploaded: boolean }> & { cancelled?: boolean } = uploadOnce(client, store, path, field, signal, known)
    .catch((error: unknown) => {
      upload.cancelled = signal?.aborted === true;
      throw error;
    })
    .finally(() => inFlight.delete(key));
  inFlight.set(key, upload);
  return upload;
}

const inFlight = new Map<string, Promise<{ sha256: string; uploaded: boolean }>>();

/** The worker's refusal of an upload because the connection's (or the node's) upload slots are taken: it passes. */
const uploadSlotsTaken = (error: unknown) => error instanceof ResourceExhaustedError && / open uploads/.test(error.message);

async function uploadOnce(client: WorkerClient, store: StoreKind, path: string, field: string, signal?: AbortSignal,
  known?: { sha256: string; size: number }): Promise<{ sha256: string; uploaded: boolean }> {
  let size = known?.size;
  if (size === undefined) {
    try {
      size = statSync(path).size;
    } catch {
      throw new UsageError(field, `${store === 'weights' ? 'weights file' : 'packed data set'} ${path} does not exist`);
    }
  }
  const limit = store === 'weights' ? LIMITS.weightsBytes : LIMITS.datasetBytes;
  if (size > limit) throw new UsageError(field, `${path} holds ${size} bytes; at most ${limit} travel to a worker`);
  const sha256 = known?.sha256 ?? (await fileSha256(path));
  const has = store === 'weights' ? client.hasWeights.bind(client) : client.hasDataset.bind(client);
  const put = store === 'weights' ? client.putWeights.bind(client) : client.putDataset.bind(client);
  const until = Date.now() + UPLOAD_WAIT_MS;
  while (Date.now() < until) {
    signal?.throwIfAborted();
    let state;
    try {
      state = await has(sha256, { signal, timeoutMs: 30_000 });
    } catch (error) {
      if (error instanceof UnimplementedError) {
        throw new AfaError(`the worker at ${client.address} predates ${store} over the contract: install this version's afa-worker there, ` +
          "or connect with { sharedFilesystem: true } if it reads this machine's files", { cause: error });
      }
      throw error;
    }
    if (state.present) return { sha256, uploaded: false };
    if (!state.uploading) {
      const response = await put(chunksOf(path, sha256, size), { signal }).catch((error: unknown) => {
        if (uploadSlotsTaken(error)) return undefined;
        throw error;
      });
      if (response && response.sha256 !== sha256) throw new AfaError(`upload: the worker stored ${response.sha256}, not ${sha256}`);
      if (response && !response.inProgress) return { sha256, uploaded: !response.alreadyPresent };
    }
    // Another client's upload of these bytes to this node, or every upload slot taken: wait for it.
    await delay(500, signal);
  }
  throw new AfaError(`another client's upload of ${sha256.slice(0, 12)}... to ${client.address} did not finish within ${UPLOAD_WAIT_MS / 60_000} min`);
}

/** Makes `path` available in the worker's weight store and returns its sha256; uploads only when it is missing there. */
export function uploadWeights(client: WorkerClient, path: string, signal?: AbortSignal, field = 'source.path'): Promise<{ sha256: string; uploaded: boolean }> {
  return ensureUploaded(client, 'weights', path, field, signal);
}

/** Downloads `sha256` from the worker's store to `path` (atomically), checking the bytes hash to it. */
export async function downloadWeights(client: WorkerClient, sha256: string, path: string, signal?: AbortSignal): Promise<number> {
  await mkdir(dirname(path), { recursive: true });
  const temp = join(dirname(path), `.${basename(path).slice(0, 100)}.${randomBytes(8).toString('hex')}.download`); // created exclusively below
  const file = await open(temp, 'wx', 0o600);
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    for await (const chunk of client.getWeights(sha256, { signal })) {
      bytes += chunk.data.length;
      if (bytes > LIMITS.weightsBytes) throw new AfaError(`GetWeights ${sha256}: more than ${LIMITS.weightsBytes} bytes`);
      hash.update(chunk.data);
      await file.write(chunk.data);
    }
    await file.sync();
    await file.close();
    const got = hash.digest('hex');
    if (got !== sha256) throw new AfaError(`GetWeights: the downloaded bytes hash to ${got}, not ${sha256}`);
    await rename(temp, path);
    return bytes;
  } catch (error) {
    await file.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw error;
  }
}

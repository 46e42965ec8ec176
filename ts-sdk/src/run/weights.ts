/**
 * Weights over the contract, for workers that do not share the SDK's disk: a file is named by its
 * sha256, uploaded only when the worker's store lacks it, and a source a worker pretrained is
 * downloaded into the SDK's cache, verified by hash, so every worker trains from the same bytes.
 */
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { WorkerClient } from '../client/client.js';
import { AfaError, UnimplementedError, UsageError } from '../errors.js';
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

/** Makes `path` available in the worker's weight store and returns its sha256; uploads only when it is missing there. */
export async function uploadWeights(client: WorkerClient, path: string, signal?: AbortSignal, field = 'source.path'): Promise<{ sha256: string; uploaded: boolean }> {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new UsageError(field, `weights file ${path} does not exist`);
  }
  if (size > LIMITS.weightsBytes) throw new UsageError(field, `${path} holds ${size} bytes; at most ${LIMITS.weightsBytes} travel to a worker`);
  const sha256 = await fileSha256(path);
  let present: boolean;
  try {
    present = (await client.hasWeights(sha256, { signal, timeoutMs: 30_000 })).present;
  } catch (error) {
    if (error instanceof UnimplementedError) {
      throw new AfaError(`the worker at ${client.address} predates weights over the contract (no HasWeights): install this ` +
        "version's afa-worker there, or connect with { sharedFilesystem: true } if it reads this machine's files", { cause: error });
    }
    throw error;
  }
  if (present) return { sha256, uploaded: false };
  const response = await client.putWeights(chunksOf(path, sha256, size), { signal });
  if (response.sha256 !== sha256) throw new AfaError(`PutWeights: the worker stored ${response.sha256}, not ${sha256}`);
  return { sha256, uploaded: !response.alreadyPresent };
}

/** Downloads `sha256` from the worker's store to `path` (atomically), checking the bytes hash to it. */
export async function downloadWeights(client: WorkerClient, sha256: string, path: string, signal?: AbortSignal): Promise<number> {
  await mkdir(dirname(path), { recursive: true });
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.download`);
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

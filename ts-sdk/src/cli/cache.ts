/**
 * `afa cache`: what the cache holds (run outputs, pretrained sources, the weight and data set stores,
 * decoded images), kind by kind with sizes, and pruning by age or size. Only entries inside the
 * cache's own folders are removed; links are removed, never followed.
 */
import type { Command } from 'commander';
import { existsSync, lstatSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { Fields } from '../fields.js';
import { cacheDir } from '../paths.js';
import { formatTable } from '../table.js';
import { EXIT, reportFailure } from './exit.js';

/** The cache's kinds: a folder each, its entries files or folders. */
export const CACHE_KINDS = {
  runs: 'run outputs (checkpoints, result.json): runs/',
  sources: 'pretrained sources: sources/',
  weights: 'the worker\'s weight store (uploads, exports): weights/',
  datasets: 'packed data sets (packs made here, and the worker\'s store): datasets/',
  decoded: 'decoded images, memory-mapped by the workers of this machine: decoded/',
} as const;
export type CacheKind = keyof typeof CACHE_KINDS;

export interface CacheEntry {
  kind: CacheKind;
  path: string;
  bytes: number;
  /** Last modified (or used: stores touch what they serve), ms since the epoch. */
  modifiedMs: number;
}

function sizeOf(path: string): { bytes: number; modifiedMs: number } {
  const info = lstatSync(path);
  if (!info.isDirectory()) return { bytes: info.size, modifiedMs: info.mtimeMs };
  let bytes = 0;
  let modifiedMs = info.mtimeMs;
  for (const name of readdirSync(path)) {
    const inner = sizeOf(join(path, name));
    bytes += inner.bytes;
    modifiedMs = Math.max(modifiedMs, inner.modifiedMs);
  }
  return { bytes, modifiedMs };
}

/** Every entry of the cache, by kind (a source's .safetensors and its .json sidecar are one entry). */
export function cacheEntries(root = cacheDir()): CacheEntry[] {
  const out: CacheEntry[] = [];
  for (const kind of Object.keys(CACHE_KINDS) as CacheKind[]) {
    const dir = join(root, kind);
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      if (name.startsWith('.') || (kind === 'sources' && name.endsWith('.json'))) continue; // locks, stamps; sidecars go with their weights
      const path = join(dir, name);
      out.push({ kind, path, ...sizeOf(path) });
    }
  }
  return out;
}

function remove(entry: CacheEntry): void {
  rmSync(entry.path, { recursive: true, force: true });
  if (entry.kind === 'sources') rmSync(entry.path.replace(/\.safetensors$/, '.json'), { force: true });
  if (entry.kind === 'weights' || entry.kind === 'datasets') rmSync(join(entry.path, '..', `.${entry.path.split('/').at(-1)!.slice(0, 64)}.verified`), { force: true });
}

const UNITS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };
const SIZES: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

export function parseAge(text: string, field: string): number {
  const m = /^(\d+(?:\.\d+)?)([smhdw])$/.exec(text.trim());
  if (!m) throw new UsageError(field, `must be a duration like 30d, 12h or 90m, got ${JSON.stringify(text)}`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

export function parseSize(text: string, field: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(text.trim());
  if (!m) throw new UsageError(field, `must be a size like 10G, 500M or 2048, got ${JSON.stringify(text)}`);
  return Number(m[1]) * SIZES[m[2]!.toLowerCase()]!;
}

export const formatBytes = (n: number) => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB`
  : `${(n / 2 ** 10).toFixed(1)} KiB`);

/** Which entries a prune removes: older than `olderThanMs`, then the oldest until the kinds fit `maxBytes`. */
export function toPrune(entries: readonly CacheEntry[], now: number, olderThanMs?: number, maxBytes?: number): CacheEntry[] {
  const old = olderThanMs === undefined ? [] : entries.filter((e) => now - e.modifiedMs > olderThanMs);
  if (maxBytes === undefined) return old;
  const rest = entries.filter((e) => !old.includes(e)).sort((a, b) => a.modifiedMs - b.modifiedMs);
  let total = rest.reduce((a, e) => a + e.bytes, 0);
  const over: CacheEntry[] = [];
  for (const e of rest) {
    if (total <= maxBytes) break;
    over.push(e);
    total -= e.bytes;
  }
  return [...old, ...over];
}

function listing(entries: readonly CacheEntry[], root: string): string {
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  const rows = (Object.keys(CACHE_KINDS) as CacheKind[]).map((kind) => {
    const of = entries.filter((e) => e.kind === kind);
    const times = of.map((e) => e.modifiedMs);
    return [kind, String(of.length), formatBytes(of.reduce((a, e) => a + e.bytes, 0)), of.length ? day(Math.min(...times)) : '-',
      of.length ? day(Math.max(...times)) : '-', CACHE_KINDS[kind]];
  });
  const total = entries.reduce((a, e) => a + e.bytes, 0);
  return `${root}\n${formatTable(['kind', 'entries', 'size', 'oldest', 'newest', 'what'], rows)}\ntotal ${formatBytes(total)}`;
}

interface PruneFlags { kind: string; olderThan?: string; maxSize?: string; dryRun?: boolean }

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('what the cache ($AFA_CACHE) holds, and pruning it');
  cache.command('list', { isDefault: true }).description('entries and sizes by kind').action(() => {
    const root = cacheDir();
    process.stdout.write(`${listing(cacheEntries(root), root)}\n`);
  });
  cache.command('prune').description('remove entries older than --older-than, then the oldest past --max-size')
    .option('--kind <kind>', `one of ${Object.keys(CACHE_KINDS).join(', ')}, or all`, 'all')
    .option('--older-than <age>', 'e.g. 30d, 12h')
    .option('--max-size <size>', 'keep at most this much of the chosen kinds, the most recently used (e.g. 10G)')
    .option('--dry-run', 'say what would go, remove nothing')
    .action((opts: PruneFlags) => {
      try {
        const kind = Fields.usage('--kind').oneOf(opts.kind, [...Object.keys(CACHE_KINDS), 'all'] as const);
        if (opts.olderThan === undefined && opts.maxSize === undefined) throw new UsageError('--older-than', 'give --older-than, --max-size or both');
        const age = opts.olderThan === undefined ? undefined : parseAge(opts.olderThan, '--older-than');
        const size = opts.maxSize === undefined ? undefined : parseSize(opts.maxSize, '--max-size');
        const entries = cacheEntries().filter((e) => kind === 'all' || e.kind === kind);
        const gone = toPrune(entries, Date.now(), age, size);
        for (const e of gone) {
          if (!opts.dryRun) remove(e);
          process.stdout.write(`${opts.dryRun ? 'would remove' : 'removed'} ${e.kind} ${e.path} (${formatBytes(e.bytes)})\n`);
        }
        process.stdout.write(`${gone.length} entries, ${formatBytes(gone.reduce((a, e) => a + e.bytes, 0))}${opts.dryRun ? ' (dry run)' : ''}\n`);
        process.exitCode = EXIT.OK;
      } catch (error) {
        process.exitCode = reportFailure('cache', error);
      }
    });
}

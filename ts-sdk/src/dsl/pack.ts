/**
 * Data sets packed deterministically, so the same images always give the same sha256 (the name a
 * worker knows them by): a USTAR tar with fixed metadata (mode 0644, owner 0, time 0) of
 * `afa-dataset.json` ({"format": "afa-dataset/1", "classNames": [...]}, label order) and
 * `<split>/<label, 5 digits>/<index, 6 digits>.<ext>` for each image, in split, label and file
 * order. An ImageFolder on disk and the same images held in memory (`data.images`) pack to the same
 * bytes. Packs are kept in `<cache>/datasets/<sha256>.tar`, from where they are uploaded by hash.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { extname, join, relative, sep } from 'node:path';
import { UsageError } from '../errors.js';
import { cacheDir } from '../paths.js';
import { LIMITS } from './limits.js';

export const MANIFEST = 'afa-dataset.json';
export const PACK_FORMAT = 'afa-dataset/1';
export const SPLITS = ['train', 'val', 'test'] as const;
export type SplitName = (typeof SPLITS)[number];
/** Image files an ImageFolder may hold (the worker's list). */
export const IMAGE_SUFFIXES = ['.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp', '.tif', '.tiff', '.ppm', '.pgm'];

/** One image of a pack: its split, label, encoded bytes (a file's), the extension it is stored with, and where it came from. */
export interface PackEntry {
  split: SplitName;
  label: number;
  bytes: Uint8Array;
  ext: string;
  /** How errors name it: its path in the folder, or `train[3]` for images from memory. */
  origin: string;
}

export interface Packed {
  sha256: string;
  path: string;
  bytes: number;
  /** Pack member name -> where the image came from, to name a file the worker refuses. */
  origins: Map<string, string>;
}

function header(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  const put = (value: string, offset: number, length: number) => h.write(value.slice(0, length), offset, length, 'utf8');
  const octal = (value: number, length: number) => value.toString(8).padStart(length - 1, '0') + '\0';
  if (Buffer.byteLength(name) > 100) throw new Error(`pack member name too long: ${name}`);
  put(name, 0, 100);
  put(octal(0o644, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(size, 12), 124, 12);
  put(octal(0, 12), 136, 12);
  h.fill(' ', 148, 156); // the checksum counts its own field as spaces
  put('0', 156, 1);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  let sum = 0;
  for (const byte of h) sum += byte;
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
  return h;
}

/** The pack's blocks, in order (each member: header, data, zero padding to 512; two zero blocks at the end). */
function* blocks(classNames: readonly string[], entries: readonly PackEntry[]): Generator<{ name?: string; origin?: string; block: Uint8Array }> {
  const manifest = Buffer.from(JSON.stringify({ format: PACK_FORMAT, classNames }));
  const member = function* (name: string, data: Uint8Array, origin?: string) {
    yield { name, origin, block: header(name, data.length) };
    yield { block: data };
    const pad = (512 - (data.length % 512)) % 512;
    if (pad) yield { block: Buffer.alloc(pad) };
  };
  yield* member(MANIFEST, manifest);
  // Split, then label, then the order given (a folder's files sorted by name): a stable sort.
  const order = (e: PackEntry) => SPLITS.indexOf(e.split) * classNames.length + e.label;
  const sorted = entries.map((e, i) => ({ e, i })).sort((a, b) => order(a.e) - order(b.e) || a.i - b.i).map((x) => x.e);
  let previous = -1;
  let index = 0;
  for (const e of sorted) {
    index = order(e) === previous ? index + 1 : 0;
    previous = order(e);
    yield* member(`${e.split}/${String(e.label).padStart(5, '0')}/${String(index).padStart(6, '0')}${e.ext}`, e.bytes, e.origin);
  }
  yield { block: Buffer.alloc(1024) };
}

/**
 * Packs the images into the cache's pack store (once per content) and returns its sha256 and path;
 * with `write: false` only the sha256 the pack would have (nothing is written).
 */
export function pack(classNames: readonly string[], entries: readonly PackEntry[], field: string, dir = cacheDir(),
  options: { write?: boolean } = {}): Packed {
  if (!classNames.length) throw new UsageError(field, 'has no classes');
  if (entries.length > LIMITS.datasetImages) throw new UsageError(field, `holds ${entries.length} images; at most ${LIMITS.datasetImages} in one data set`);
  const empty = classNames.filter((_, label) => !entries.some((e) => e.split === 'train' && e.label === label));
  if (empty.length) throw new UsageError(field, `classes without training images: ${empty.slice(0, 20).join(', ')}`);
  const size = entries.reduce((a, e) => a + 512 + Math.ceil(e.bytes.length / 512) * 512, 2048);
  if (size > LIMITS.datasetBytes) throw new UsageError(field, `packs to ${size} bytes; at most ${LIMITS.datasetBytes} travel to a worker`);
  const write = options.write ?? true;
  const store = join(dir, 'datasets');
  if (write) mkdirSync(store, { recursive: true });
  const tmp = join(store, `.pack-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  const fd = write ? openSync(tmp, 'wx', 0o600) : -1;
  const hash = createHash('sha256');
  const origins = new Map<string, string>();
  let bytes = 0;
  try {
    for (const { name, origin, block } of blocks(classNames, entries)) {
      if (name && origin) origins.set(name, origin);
      hash.update(block);
      if (write) writeSync(fd, block);
      bytes += block.length;
    }
    if (write) fsyncSync(fd);
  } finally {
    if (write) closeSync(fd);
  }
  const sha256 = hash.digest('hex');
  const path = join(store, `${sha256}.tar`);
  if (write) renameSync(tmp, path); // the same bytes when it was there already
  return { sha256, path, bytes, origins };
}

/** Code point order, as Python sorts names (JavaScript's default sort compares UTF-16 units). */
export const byCodePoint = (a: string, b: string) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

/** An ImageFolder's images as pack entries: train/<class>/ (classes sorted), optional val/ and test/. */
export function folderEntries(root: string, field: string): { classNames: string[]; entries: PackEntry[] } {
  const train = join(root, 'train');
  if (!existsSync(train) || !statSync(train).isDirectory()) {
    throw new UsageError(field, `${root} has no train/ folder (expected train/ and optional val/ and test/)`);
  }
  const realRoot = realpathSync(root);
  const classNames = readdirSync(train).filter((n) => statSync(join(train, n)).isDirectory()).sort(byCodePoint);
  if (!classNames.length) throw new UsageError(field, `${train} has no class folders`);
  const entries: PackEntry[] = [];
  for (const split of SPLITS) {
    const folder = join(root, split);
    if (!existsSync(folder)) continue;
    const extra = readdirSync(folder).filter((n) => statSync(join(folder, n)).isDirectory() && !classNames.includes(n)).sort(byCodePoint);
    if (extra.length) throw new UsageError(field, `${folder} has class folders train/ lacks: ${extra.join(', ')}`);
    classNames.forEach((name, label) => {
      const dir = join(folder, name);
      if (!existsSync(dir)) return;
      for (const file of readdirSync(dir).sort(byCodePoint)) {
        const path = join(dir, file);
        if (!IMAGE_SUFFIXES.includes(extname(file).toLowerCase())) continue;
        const real = realpathSync(path);
        if (real !== realRoot && !real.startsWith(`${realRoot}${sep}`)) throw new UsageError(field, `${path} is a link out of the data set's root ${root}`);
        if (!statSync(path).isFile()) throw new UsageError(field, `${path} is not a regular file`);
        entries.push({ split, label, bytes: readFileSync(path), ext: extname(file).toLowerCase(), origin: relative(root, path) });
      }
    });
  }
  return { classNames, entries };
}

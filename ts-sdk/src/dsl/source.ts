/** Where the source model comes from: a weights file, a pretraining run (cached), or nowhere. */
import type { DataSpec } from './data.js';
import type { LrScheduleSpec } from './stage.js';
import { lr as lrSchedules } from './stage.js';

export interface WeightsSource {
  readonly kind: 'weights';
  /** A .safetensors file, or a torch file of plain tensors (loaded with weights_only). */
  readonly path: string;
}

export interface PretrainSource {
  readonly kind: 'pretrain';
  readonly data: DataSpec;
  readonly iterations: number;
  readonly batchSize: number;
  readonly lr: number;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly lrSchedule: LrScheduleSpec;
  readonly seed: number;
}

/** No source: training from scratch (only `none` and `l2fe`-free schedules make sense). */
export interface ScratchSource {
  readonly kind: 'scratch';
}

export type SourceSpec = WeightsSource | PretrainSource | ScratchSource;

export const weights = (path: string): WeightsSource => ({ kind: 'weights', path });

export interface PretrainOptions {
  data: DataSpec;
  /** @default 1500 */
  iterations?: number;
  /** @default 128 */
  batchSize?: number;
  /** @default 0.05 */
  lr?: number;
  /** @default 0.9 */
  momentum?: number;
  /** @default 1e-4 */
  weightDecay?: number;
  /** @default cosine to 0 */
  lrSchedule?: LrScheduleSpec;
  /** @default 0 */
  seed?: number;
}

/** Pretrain the source on `data`; the result is cached by the hash of what produced it. */
export function pretrain(options: PretrainOptions): PretrainSource {
  return {
    kind: 'pretrain',
    data: options.data,
    iterations: options.iterations ?? 1500,
    batchSize: options.batchSize ?? 128,
    lr: options.lr ?? 0.05,
    momentum: options.momentum ?? 0.9,
    weightDecay: options.weightDecay ?? 1e-4,
    lrSchedule: options.lrSchedule ?? lrSchedules.cosine(),
    seed: options.seed ?? 0,
  };
}

export const fromScratch = (): ScratchSource => ({ kind: 'scratch' });

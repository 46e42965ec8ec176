/** `experiment({...})`: the whole spec of one run, as plain data that serialises to JSON and back. */
import type { BackboneSpec } from './backbone.js';
import type { DataSpec } from './data.js';
import { contentHash } from './hash.js';
import type { SourceSpec } from './source.js';
import type { ScheduleStep } from './stage.js';
import type { Precision } from './precision.js';
import { parseExperiment } from './validate.js';

export const SPEC_VERSION = 1;

export interface ExperimentInput {
  name: string;
  /** Seed of the head, sampling, batch order and attention init (stages may override). @default 0 */
  seed?: number;
  backbone: BackboneSpec;
  source: SourceSpec;
  target: DataSpec;
  /** Stages and promote steps, in order; e.g. `afa({...})` or `baseline.fineTune({...})`. */
  schedule: readonly ScheduleStep[];
  /** "" = CUDA when the worker has it, else CPU; or "cpu", "cuda", "cuda:N". @default "" */
  device?: string;
  /** Evaluate the selected model on the test split once at the end. @default true */
  evaluateTest?: boolean;
  /** @default "auto" (see `Precision`) */
  precision?: Precision;
}

export interface ExperimentSpec {
  readonly version: typeof SPEC_VERSION;
  readonly name: string;
  readonly seed: number;
  readonly backbone: BackboneSpec;
  readonly source: SourceSpec;
  readonly target: DataSpec;
  readonly schedule: readonly ScheduleStep[];
  readonly device: string;
  readonly evaluateTest: boolean;
  /** Absent means `auto`, so specs written before the option hash as they did. */
  readonly precision?: Exclude<Precision, 'auto'>;
}

/** Builds and validates an experiment; throws `InvalidSpecError` naming the field. */
export function experiment(input: ExperimentInput): ExperimentSpec {
  return parseExperiment({ version: SPEC_VERSION, seed: 0, device: '', evaluateTest: true, ...dropUndefined(input) });
}

/** The stable content hash of a spec (16 hex characters). */
export function specHash(spec: ExperimentSpec): string {
  return contentHash(spec);
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

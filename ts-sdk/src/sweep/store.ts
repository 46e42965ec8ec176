/**
 * The results file: one JSON line per finished trial, appended with a single write and fsync, so
 * a crash never leaves half a record behind; a reader also drops a torn last line if one exists.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, truncateSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ExperimentSpec } from '../dsl/experiment.js';
import { FieldError, UsageError } from '../errors.js';
import { Fields } from '../fields.js';
import { checkTrialRecord, TRIAL_ID } from './record-check.js';

export type TrialStatus = 'completed' | 'pruned' | 'failed';

export interface CurvePoint {
  /** Index of the stage in the schedule's stages (promote steps not counted). */
  stage: number;
  step: number;
  /** Step counted across stages, for one curve per trial. */
  globalStep: number;
  accuracy: number;
  loss: number;
}

/** Learned attention of one aligned layer at the end of a stage (absent for stages without attention). */
export interface TrialAttention {
  stage: number;
  layer: string;
  /** Mean entropy of the attention distribution over the last batch, in nats. */
  entropy: number;
  /** Entropy of the uniform distribution over the same support. */
  maxEntropy: number;
}

export interface TrialRecord {
  trialId: string;
  configId: string;
  values: Record<string, unknown>;
  labels: Record<string, string>;
  seed: number;
  status: TrialStatus;
  metrics: { bestValAccuracy: number; finalValAccuracy: number; finalValLoss: number; testAccuracy: number | null };
  curve: CurvePoint[];
  /** Attention entropy per aligned layer of each attentive stage (completed trials; older records lack it). */
  attention?: TrialAttention[];
  specHash: string;
  spec: ExperimentSpec;
  error?: string;
  attempts: number;
  /** Attempts that failed and ran again, with why (a worker crash names the session, model, input and layout). */
  retries?: { attempt: number; worker: string; error: string }[];
  worker: string;
  /** The machine the last attempt ran on (host, and for Ray its address and node id; older records lack it). */
  node?: string;
  /** sha256 of the target data set's pack (image sets; older records lack it). */
  dataSha256?: string;
  wallSeconds: number;
  finishedAt: string;
}

export const RESULTS_FILE = 'results.jsonl';
export const SWEEP_FILE = 'sweep.json';
/** The Optuna study's journal, when the study lives in the sweep directory. */
export const STUDY_FILE = 'study.journal';
/** The study's summary (finished trials in order, parameter importance), for `afa report`. */
export const SEARCH_FILE = 'search.json';

/** Where a trial's `result.json` goes (its curves and attention snapshots, for `afa report`). */
export function trialRunDir(dir: string, trialId: string): string {
  if (!TRIAL_ID.test(trialId)) throw new UsageError('trialId', `${JSON.stringify(trialId.slice(0, 80))} is not a plain name: a trial's folder stays under runs/`);
  return join(dir, 'runs', trialId);
}

export function resultsPath(dir: string): string {
  return join(dir, RESULTS_FILE);
}

export function appendRecord(path: string, record: TrialRecord): void {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, 'a');
  try {
    writeSync(fd, `${JSON.stringify(record)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Makes the results file safe to append to: a last line without its newline (a write cut short by
 * a crash) is cut off, so the next record starts on a line of its own. Returns the bytes dropped
 * and the unreadable lines left elsewhere in the file (skipped by every reader).
 */
export function repairForAppend(path: string): { droppedBytes: number; tornLines: number } {
  if (!existsSync(path)) return { droppedBytes: 0, tornLines: 0 };
  const text = readFileSync(path);
  let droppedBytes = 0;
  if (text.length > 0 && text[text.length - 1] !== 0x0a) {
    const keep = text.lastIndexOf(0x0a) + 1;
    droppedBytes = text.length - keep;
    truncateSync(path, keep);
  }
  return { droppedBytes, tornLines: readRecords(path).tornLines };
}

export function readRecords(path: string): { records: TrialRecord[]; tornLines: number; rejected: string[] } {
  if (!existsSync(path)) return { records: [], tornLines: 0, rejected: [] };
  const records: TrialRecord[] = [];
  const rejected: string[] = [];
  let tornLines = 0;
  readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      tornLines += 1;
      return;
    }
    try {
      records.push(checkTrialRecord(value, Fields.usage(`line ${i + 1}`)));
    } catch (error) {
      // Readable but not a record this version writes (a hand edit, another tool): skipped, and said.
      if (!(error instanceof FieldError)) throw error;
      rejected.push(error.message);
    }
  });
  return { records, tornLines, rejected };
}

/** The latest record per trial (a retried failure is superseded by its later result). */
export function latestByTrial(records: readonly TrialRecord[]): TrialRecord[] {
  const latest = new Map<string, TrialRecord>();
  for (const r of records) latest.set(r.trialId, r);
  return [...latest.values()];
}

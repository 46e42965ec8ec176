/**
 * A run directory's `result.json`: the spec and the typed result of one experiment, attention
 * snapshots included (bytes as base64), for `afa report <run dir>` and a user's own analysis.
 */
import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomically } from '../atomic-write.js';
import { join } from 'node:path';
import type { ExperimentSpec } from '../dsl/experiment.js';
import { bytesReplacer, bytesReviver } from './attention.js';
import type { ExperimentResult } from './events.js';
import { UsageError } from '../errors.js';
import { checkRunRecord } from './result-check.js';

export const RUN_RESULT_FILE = 'result.json';

export interface RunRecord {
  spec: ExperimentSpec;
  result: ExperimentResult;
}

export function runResultPath(dir: string): string {
  return join(dir, RUN_RESULT_FILE);
}

/** JSON text of a run record; `afa run --json` prints the result the same way. */
export function toJsonText(value: unknown): string {
  return `${JSON.stringify(value, bytesReplacer, 2)}\n`;
}

export function writeRunRecord(dir: string, record: RunRecord): string {
  const path = runResultPath(dir);
  writeFileAtomically(path, toJsonText(record));
  return path;
}

export function isRunDirectory(dir: string): boolean {
  return existsSync(runResultPath(dir));
}

/** The run record of `dir`, every field checked (a UsageError naming the file and field when one is not what it claims). */
export function readRunRecord(dir: string): RunRecord {
  const path = runResultPath(dir);
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'), bytesReviver);
  } catch (error) {
    throw new UsageError(path, `is not a readable run record: ${(error as Error).message.slice(0, 200)}`);
  }
  return checkRunRecord(value, path);
}

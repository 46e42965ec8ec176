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

export function readRunRecord(dir: string): RunRecord {
  return JSON.parse(readFileSync(runResultPath(dir), 'utf8'), bytesReviver) as RunRecord;
}

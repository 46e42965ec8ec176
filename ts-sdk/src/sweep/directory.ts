/** Reading a sweep's output directory back (for `afa results` and `afa report`), every part checked. */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join, relative, isAbsolute } from 'node:path';
import { FieldError, UsageError } from '../errors.js';
import type { SweepSpec } from './space.js';
import { latestByTrial, readRecords, resultsPath, SWEEP_FILE, trialRunDir, type TrialRecord } from './store.js';
import { TRIAL_ID } from './record-check.js';
import { parseSweep } from './validate.js';

export interface SweepDirectory {
  dir: string;
  sweep: SweepSpec;
  records: TrialRecord[];
  tornLines: number;
  /** Readable lines that are not records of this sweep, each said in a line (skipped). */
  rejected: string[];
}

/** sweep.json's definition, checked as a sweep file is (space keys, seeds, search, metric: all of it). */
function readSweepFile(file: string): { sweep: SweepSpec; trials?: string[] } {
  let body: { sweep?: unknown; trials?: unknown };
  try {
    body = JSON.parse(readFileSync(file, 'utf8')) as typeof body;
  } catch (error) {
    throw new UsageError(file, `is not readable JSON: ${(error as Error).message.slice(0, 200)}`);
  }
  let sweep: SweepSpec;
  try {
    sweep = parseSweep(body?.sweep);
  } catch (error) {
    if (error instanceof FieldError) throw new UsageError(file, `sweep.${error.field}: ${error.problem}`, error.valid);
    throw error;
  }
  if (body.trials === undefined) return { sweep };
  if (!Array.isArray(body.trials) || !body.trials.every((t) => typeof (t as { trialId?: unknown })?.trialId === 'string' && TRIAL_ID.test((t as { trialId: string }).trialId))) {
    throw new UsageError(file, 'trials: every entry must have a plain trialId (letters, digits, _ and -)');
  }
  return { sweep, trials: body.trials.map((t) => (t as { trialId: string }).trialId) };
}

export function loadSweepDirectory(dir: string): SweepDirectory {
  const sweepFile = join(dir, SWEEP_FILE);
  if (!existsSync(sweepFile)) throw new UsageError(dir, `is not a sweep output directory (no ${SWEEP_FILE})`);
  const { sweep, trials } = readSweepFile(sweepFile);
  const { records, tornLines, rejected } = readRecords(resultsPath(dir));
  // Only the trials of the definition in sweep.json (older directories list none: keep them all).
  const planned = trials ? new Set(trials) : undefined;
  const paths = Object.keys(sweep.space);
  const ours = latestByTrial(records).filter((r) => !planned || planned.has(r.trialId)).filter((r) => {
    const missing = paths.find((p) => typeof r.labels[p] !== 'string');
    if (missing) rejected.push(`trial ${r.trialId}: no label for the space's ${missing} (its labels: ${Object.keys(r.labels).join(', ') || 'none'})`);
    return !missing;
  });
  return { dir, sweep, records: ours, tornLines, rejected };
}

/**
 * The trial's run folder, if it is one: under runs/ once links are resolved (a planted link to
 * elsewhere is not read, nor written beside).
 */
export function trialRunFolder(dir: string, trialId: string): string | undefined {
  const folder = trialRunDir(dir, trialId);
  if (!existsSync(folder)) return undefined;
  const runs = realpathSync(join(dir, 'runs'));
  const real = realpathSync(folder);
  const inside = relative(runs, real);
  return inside && !inside.startsWith('..') && !isAbsolute(inside) ? folder : undefined;
}

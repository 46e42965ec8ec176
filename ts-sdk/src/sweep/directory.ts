/** Reading a sweep's output directory back (for `afa results` and `afa report`). */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import type { SweepSpec } from './space.js';
import { latestByTrial, readRecords, resultsPath, SWEEP_FILE, type TrialRecord } from './store.js';

export interface SweepDirectory {
  dir: string;
  sweep: SweepSpec;
  records: TrialRecord[];
  tornLines: number;
}

export function loadSweepDirectory(dir: string): SweepDirectory {
  const sweepFile = join(dir, SWEEP_FILE);
  if (!existsSync(sweepFile)) throw new UsageError(dir, `is not a sweep output directory (no ${SWEEP_FILE})`);
  const { sweep, trials } = JSON.parse(readFileSync(sweepFile, 'utf8')) as { sweep: SweepSpec; trials?: { trialId: string }[] };
  const { records, tornLines } = readRecords(resultsPath(dir));
  // Only the trials of the definition in sweep.json (older directories list none: keep them all).
  const planned = trials ? new Set(trials.map((t) => t.trialId)) : undefined;
  return { dir, sweep, records: latestByTrial(records).filter((r) => !planned || planned.has(r.trialId)), tornLines };
}

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
  const { sweep } = JSON.parse(readFileSync(sweepFile, 'utf8')) as { sweep: SweepSpec };
  const { records, tornLines } = readRecords(resultsPath(dir));
  return { dir, sweep, records: latestByTrial(records), tornLines };
}

/** Result tables: one experiment's stages, and several experiments side by side. */
import type { ExperimentResult } from '../run/events.js';
import { formatTable, pct, secs } from '../table.js';

export function formatResult(result: ExperimentResult): string {
  const rows = result.stages.map((s) => [
    s.name,
    s.regularizer,
    String(s.stepsCompleted),
    s.history.evals.length ? pct(s.bestValAccuracy) : 'no val',
    s.history.evals.length ? String(s.bestStep) : '-',
    secs(s.wallSeconds),
    s.attention.length ? s.attention.map((a) => `${(a.entropy / (a.maxEntropy || 1)).toFixed(2)}`).join('/') : '-',
  ]);
  const table = formatTable(['stage', 'regularizer', 'steps', 'best val', 'at step', 'time', 'attn entropy (rel.)'], rows);
  const noValidation = result.stages.every((s) => !s.history.evals.some((e) => e.split === 'val'));
  const lines = [
    `${result.name} (spec ${result.specHash}, seed ${result.seed})`,
    table,
    noValidation ? `no validation split: nothing was selected (the model of the last step is kept); test ${pct(result.testAccuracy)}`
      : `selected model: val ${pct(result.bestValAccuracy)}, test ${pct(result.testAccuracy)}`,
    `time: ${secs(result.timings.totalSeconds)} (source ${result.timings.sourceCached ? 'cached' : secs(result.timings.pretrainSeconds)}, ` +
      `transfer ${secs(result.timings.transferSeconds)})`,
  ];
  if (result.checkpointPath) lines.push(`checkpoint: ${result.checkpointPath}`);
  return lines.join('\n');
}

/** One row per experiment: validation and test accuracy of the selected model and the time taken. */
export function formatComparison(results: readonly ExperimentResult[], label: (r: ExperimentResult) => string = (r) => r.name): string {
  const rows = results.map((r) => [
    label(r),
    pct(r.bestValAccuracy),
    pct(r.testAccuracy),
    secs(r.timings.transferSeconds),
    r.stages.map((s) => s.name).join(' > '),
  ]);
  return formatTable(['method', 'val acc', 'test acc', 'time', 'stages'], rows);
}

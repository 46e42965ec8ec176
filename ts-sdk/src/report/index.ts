/**
 * `afa-transfer/report`: what a person sees, for your own tools: progress lines and bars, result
 * tables, the HTML reports of a run and of a sweep, TensorBoard event files.
 *
 * @example
 * ```ts
 * import { Progress, formatResult } from 'afa-transfer/report';
 * const progress = new Progress();
 * for await (const event of run.events) progress.handle(event);
 * console.log(formatResult(await run.result));
 * ```
 */
export { Progress } from './progress.js';
export type { ProgressOptions } from './progress.js';
export { SweepProgress } from './sweep-progress.js';
export { formatResult, formatComparison } from './result.js';
export { formatTable } from '../table.js';
export { renderRunReport } from './run-report.js';
export { renderReport, writeReport } from './html.js';
export { TensorBoardWriter, TensorBoardRun } from './tensorboard.js';
export type { TensorBoardOptions } from './tensorboard.js';
export { writeRunRecord, readRunRecord } from '../run/result-file.js';
export { bytesReplacer, bytesReviver } from '../run/attention.js';

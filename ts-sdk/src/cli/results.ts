import type { Command } from 'commander';
import { join, resolve } from 'node:path';
import { writeReport } from '../report/html.js';
import { renderRunReport } from '../report/run-report.js';
import { writeFileAtomically } from '../atomic-write.js';
import { isRunDirectory, readRunRecord } from '../run/result-file.js';
import { loadSweepDirectory, type SweepDirectory } from '../sweep/directory.js';
import { formatSummaryTable, recordsToCsv, summarize } from '../sweep/summary.js';
import { clipText, reportFailure } from './exit.js';

/** Lines of results.jsonl that were skipped, said one per line (the first few). */
function noteSkipped(loaded: SweepDirectory): void {
  if (loaded.tornLines) process.stderr.write(`note: ${loaded.tornLines} unreadable line(s) in results.jsonl were skipped\n`);
  for (const why of loaded.rejected.slice(0, 5)) process.stderr.write(`warning: results.jsonl: skipped ${clipText(why, 500)}\n`);
  if (loaded.rejected.length > 5) process.stderr.write(`warning: results.jsonl: ${loaded.rejected.length - 5} more records skipped\n`);
}

function guard(command: string, action: () => void): void {
  try {
    action();
  } catch (error) {
    process.exitCode = reportFailure(command, error);
  }
}

export function registerResults(program: Command): void {
  program
    .command('results <dir>')
    .description("a sweep's results: the table by configuration, or CSV")
    .option('--csv [file]', 'write one row per trial as CSV (to the file, or stdout)')
    .action((dir: string, opts: { csv?: string | boolean }) =>
      guard('results', () => {
        const loaded = loadSweepDirectory(resolve(dir));
        if (opts.csv !== undefined) {
          const csv = recordsToCsv(loaded.records);
          if (typeof opts.csv === 'string') writeFileAtomically(resolve(opts.csv), csv);
          else process.stdout.write(csv);
          return;
        }
        const summaries = summarize(loaded.records, loaded.sweep.metric, loaded.sweep.goal);
        process.stdout.write(`${loaded.sweep.name}: ${loaded.records.length} trials (selection on ${loaded.sweep.metric})\n\n`);
        process.stdout.write(`${formatSummaryTable(summaries, loaded.sweep.metric)}\n`);
        noteSkipped(loaded);
      }));

  program
    .command('report <dir>')
    .description("write a self-contained HTML report of a sweep's directory, or of a run's (the folder of its result.json)")
    .option('--out <file>', 'the HTML file (default: <dir>/report.html)')
    .action((dir: string, opts: { out?: string }) =>
      guard('report', () => {
        const out = resolve(opts.out ?? join(dir, 'report.html'));
        if (isRunDirectory(resolve(dir))) writeFileAtomically(out, renderRunReport(readRunRecord(resolve(dir))));
        else {
          const loaded = loadSweepDirectory(resolve(dir));
          noteSkipped(loaded);
          writeReport(loaded, out);
        }
        process.stdout.write(`report: ${out}\n`);
      }));
}

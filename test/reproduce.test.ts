// The reproduction study: its pipeline runs end to end (tiny scale), and the committed results,
// docs table and README table agree with each other.
import { expect } from 'chai';
import { execa } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readRecords } from '../ts-sdk/src/sweep/index.js';
import { headlineMarkdown, taskTable } from '../studies/reproduce/report.js';
import { METHODS, TASKS } from '../studies/reproduce/study.js';
import { tempDir } from './helpers.js';

const COMMITTED = 'docs/reproduction';

function firstTable(markdown: string): string {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.startsWith('| method |'));
  const end = lines.findIndex((l, i) => i > start && !l.startsWith('|'));
  return lines.slice(start, end === -1 ? undefined : end).join('\n');
}

describe('reproduction study', () => {
  it('runs every task, method and the investigation, writes the tables and chart, and resumes', async () => {
    const out = tempDir();
    const run = () => execa('node_modules/.bin/tsx', ['studies/reproduce.ts', '--out', out], { reject: false, env: { AFA_EXAMPLES_QUICK: '1' } });
    const first = await run();
    expect(first.exitCode, first.stderr).to.equal(0);
    const table = readFileSync(join(out, 'table.md'), 'utf8');
    const headline = firstTable(table);
    for (const m of METHODS) expect(headline).to.match(new RegExp(`^\\| ${m.name} \\|( \\d+\\.\\d ± \\d+\\.\\d \\([^)]*\\) \\|){3}$`, 'm'));
    for (const t of TASKS) expect(table).to.include(`#### ${t.title}`);
    expect(table).to.include('what else was tried');
    expect(table).to.match(/\| ACT only \| alpha=0\.01 \|.*\| \d\.\d\d \/ \d\.\d\d \/ \d\.\d\d \|$/m);
    for (const t of TASKS) expect(readFileSync(join(out, `${t.id}.svg`), 'utf8')).to.include(`data-chart="reproduction-${t.id}"`);
    expect(first.stdout).to.include(headline);

    const again = await run();
    expect(again.exitCode, again.stderr).to.equal(0);
    expect(again.stderr).to.not.match(/^started /m); // every trial was already in the results files
    expect(firstTable(readFileSync(join(out, 'table.md'), 'utf8'))).to.equal(headline);
  });

  it('the committed table is what the committed results files give, and the README shows it', function () {
    if (!existsSync(join(COMMITTED, 'table.md'))) this.skip();
    const tables = TASKS.map((task) => taskTable(task, readRecords(join(COMMITTED, task.id, 'results.jsonl')).records));
    const headline = headlineMarkdown(tables);
    expect(firstTable(readFileSync(join(COMMITTED, 'table.md'), 'utf8'))).to.equal(headline);
    expect(readFileSync('README.md', 'utf8')).to.include(headline);
    expect(readFileSync('docs/reproduction.md', 'utf8')).to.include(headline);
  });
});

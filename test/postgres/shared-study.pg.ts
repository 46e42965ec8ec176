// Two sweep drivers sharing one Optuna study in a real PostgreSQL server (scripts/test-postgres.sh
// installs, starts and removes it; $AFA_TEST_POSTGRES_URL names the database): each configuration
// in exactly one driver's results, the study holding the budget once each.
import { expect } from 'chai';
import { execa } from 'execa';
import { join } from 'node:path';
import { backbone, baseline, choice, data, experiment, fromScratch, logUniform, sweep, type ExperimentSpec } from '../../ts-sdk/src/index.js';
import { runSweep } from '../../ts-sdk/src/sweep/index.js';
import { readRecords } from '../../ts-sdk/src/sweep/store.js';
import { fakeSlots } from '../fixtures/fake-slots.js';
import { tempDir } from '../helpers.js';

const URL = process.env.AFA_TEST_POSTGRES_URL ?? '';
const PYTHON = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');
const lrOf = (spec: ExperimentSpec) => (spec.schedule[0] as { optimizer: { lr: number } }).optimizer.lr;
const curve = (spec: ExperimentSpec, step: number, iterations: number) => Math.max(0, (step / iterations) * (1 - Math.abs(Math.log10(lrOf(spec)) + 1) / 3));

describe('two drivers share a study in PostgreSQL (real server on loopback)', function () {
  this.timeout(300_000);

  it('each configuration is in one driver\'s results and in the study once; both drivers worked', async function () {
    if (!URL) this.skip();
    const base = experiment({ name: 'pg', backbone: backbone.smallResNet({ width: 4 }), source: fromScratch(), target: data.mnist({ labelsPerClass: 2 }),
      schedule: baseline.fineTune({ iterations: 30, evalEvery: 3 }) });
    const s = sweep({ name: 'pg-shared', base, search: 'tpe', budget: 10, seeds: [0],
      space: { 'schedule[0].optimizer.lr': logUniform(1e-3, 1), 'schedule[0].batchSize': choice({ small: 16, big: 64 }) } });
    const dirs = [tempDir('afa-pg-a-'), tempDir('afa-pg-b-')];
    await Promise.all(dirs.map((out) => runSweep(s, { outDir: out, slots: fakeSlots(2, { started: [], curve }), storage: URL, earlyStop: 'asha' })));
    const configs = dirs.map((out) => readRecords(join(out, 'results.jsonl')).records.map((r) => r.configId));
    expect(configs[0]!.filter((c) => configs[1]!.includes(c))).to.deep.equal([]);
    expect(configs[0]!.length + configs[1]!.length).to.equal(10);
    expect(configs[0]!.length && configs[1]!.length).to.be.greaterThan(0);
    const script = `
import json, sys, optuna
[summary] = [s for s in optuna.get_all_study_summaries(sys.argv[1]) if s.study_name.startswith("pg-shared-")]
study = optuna.load_study(study_name=summary.study_name, storage=sys.argv[1])
# a trial asked past the budget by a driver that raced the other for the last place: failed at once, never run
print(json.dumps([t.state.name for t in study.trials if "afa_over_budget" not in t.user_attrs]))`;
    const states = JSON.parse((await execa(PYTHON, ['-c', script, URL])).stdout) as string[];
    expect(states).to.have.length(10);
    expect(states.filter((st) => st === 'RUNNING')).to.deep.equal([]);
  });
});

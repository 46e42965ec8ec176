// Searchers and pruners: grid and random keep their trial ids; Optuna's samplers and pruners (the
// real library, in the worker's Python) hold the search when asked to. The runner's dispatch is
// driven through fake worker slots (made-up learning curves, no worker) for pruning, worker loss,
// resume and two drivers sharing a study; then a real tiny task through the CLI, with SIGKILL.
import { expect } from 'chai';
import { execa } from 'execa';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { backbone, baseline, choice, data, experiment, fromScratch, grid, logUniform, sweep, UsageError, type ExperimentSpec } from '../ts-sdk/src/index.js';
import { planTrials, runSweep, type SweepEvent, type TrialRecord } from '../ts-sdk/src/sweep/index.js';
import { readRecords } from '../ts-sdk/src/sweep/store.js';
import { parseSweep } from '../ts-sdk/src/sweep/validate.js';
import { fakeSlots, type FakeRun } from './fixtures/fake-slots.js';
import { AFA_CLI, tempDir } from './helpers.js';

const PYTHON = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');

interface StudyTrial { number: number; state: string; params: Record<string, number>; value: number | null; driver: string }

/** Every trial of the one study in a journal file, read by Optuna itself. */
async function readStudy(journal: string): Promise<StudyTrial[]> {
  const script = `
import json, sys, optuna
from optuna.storages.journal import JournalFileBackend
storage = optuna.storages.JournalStorage(JournalFileBackend(sys.argv[1]))
[summary] = optuna.get_all_study_summaries(storage)
study = optuna.load_study(study_name=summary.study_name, storage=storage)
# a trial asked past the budget by a driver that raced another for the last place is failed at once, never run
print(json.dumps([{"number": t.number, "state": t.state.name, "params": t.params, "value": t.value,
                   "driver": t.user_attrs.get("afa_driver", "")} for t in study.trials if "afa_over_budget" not in t.user_attrs]))`;
  return JSON.parse((await execa(PYTHON, ['-c', script, journal])).stdout) as StudyTrial[];
}

const base = (iterations = 30) => experiment({ name: 'search', backbone: backbone.smallResNet({ width: 4 }), source: fromScratch(),
  target: data.mnist({ labelsPerClass: 2 }), schedule: baseline.fineTune({ iterations, evalEvery: 3 }) });

const lrOf = (spec: ExperimentSpec) => (spec.schedule[0] as { optimizer: { lr: number } }).optimizer.lr;
/** Val accuracy rises with the step, highest for lr near 0.1: a shape every sampler can learn. */
const curve = (spec: ExperimentSpec, step: number, iterations: number) => Math.max(0, (step / iterations) * (1 - Math.abs(Math.log10(lrOf(spec)) + 1) / 3));

const tpeSweep = (budget: number, name = 'tpe') => sweep({ name, base: base(), search: 'tpe', budget, seeds: [0, 1],
  space: { 'schedule[0].optimizer.lr': logUniform(1e-3, 1), 'schedule[0].batchSize': choice({ small: 16, big: 64 }) } });

/** Every configuration of the results is in the study once, in the state its records say, and the other way round. */
function expectAgreement(records: TrialRecord[], study: StudyTrial[], seeds: number) {
  const byConfig = new Map<string, TrialRecord[]>();
  records.forEach((r) => byConfig.set(r.configId, [...(byConfig.get(r.configId) ?? []), r]));
  expect([...byConfig.values()].every((rs) => rs.length === seeds), 'every configuration has one record per seed').to.equal(true);
  expect(new Set(records.map((r) => r.trialId)).size, 'no trial twice').to.equal(records.length);
  expect(study.filter((t) => t.state === 'RUNNING'), 'nothing left running').to.deep.equal([]);
  const lrs = (rs: TrialRecord[]) => rs[0]!.values['schedule[0].optimizer.lr'] as number;
  const told = study.map((t) => t.params['schedule[0].optimizer.lr']).sort();
  expect([...byConfig.values()].map(lrs).sort(), 'the same configurations').to.deep.equal(told);
  for (const t of study) {
    const rs = [...byConfig.values()].find((g) => lrs(g) === t.params['schedule[0].optimizer.lr'])!;
    const completed = rs.filter((r) => r.status === 'completed');
    expect(t.state, `trial ${t.number}`).to.equal(completed.length ? 'COMPLETE' : rs.some((r) => r.status === 'pruned') ? 'PRUNED' : 'FAIL');
    if (completed.length) expect(t.value).to.be.closeTo(completed.reduce((a, r) => a + r.metrics.bestValAccuracy, 0) / completed.length, 1e-12);
  }
}

describe('searchers and pruners (real Optuna; fake worker slots)', function () {
  this.timeout(300_000);

  it('grid and random keep their trial ids: the committed sweeps plan the trials their sweep.json lists', () => {
    const dirs = ['fashion-to-mnist-10', 'fashion-to-mnist-10-investigation', 'recipes/recipes-baselines-fashion-to-mnist-10'];
    for (const dir of dirs) {
      const body = JSON.parse(readFileSync(join('docs/reproduction', dir, 'sweep.json'), 'utf8')) as { sweep: unknown; trials: { trialId: string }[] };
      expect(planTrials(parseSweep(body.sweep)).map((t) => t.trialId), dir).to.deep.equal(body.trials.map((t) => t.trialId));
    }
  });

  it('TPE with ASHA: the budget of configurations, each seed recorded once, pruned at the rungs Optuna chose; study and file agree', async () => {
    const out = tempDir('afa-search-');
    const fake: FakeRun = { started: [], curve };
    const outcome = await runSweep(tpeSweep(12), { outDir: out, slots: fakeSlots(2, fake), earlyStop: 'asha', warmupSteps: 3 });
    expect(outcome.records).to.have.length(24);
    const study = await readStudy(join(out, 'study.journal'));
    expect(study).to.have.length(12);
    expectAgreement(outcome.records, study, 2);
    const pruned = outcome.records.filter((r) => r.status === 'pruned');
    const completed = outcome.records.filter((r) => r.status === 'completed');
    expect(pruned.length, 'ASHA stopped some').to.be.greaterThan(0);
    expect(completed.length, 'and let some finish').to.be.greaterThan(0);
    expect(completed.every((r) => r.curve.at(-1)!.globalStep === 30)).to.equal(true);
    // Stopped at rungs: min resource 3, reduction factor 3 -> steps 3, 9, 27; a seed that was running stops at its next point.
    expect(pruned.filter((r) => r.curve.length).every((r) => r.curve.at(-1)!.globalStep < 30)).to.equal(true);
    expect(pruned.some((r) => /SuccessiveHalvingPruner stopped it at step (3|9|27)/.test(r.error ?? ''))).to.equal(true);
    const search = JSON.parse(readFileSync(join(out, 'search.json'), 'utf8')) as { trials: unknown[]; importance: Record<string, number> };
    expect(search.trials).to.have.length(12);
    expect(Object.keys(search.importance).sort()).to.deep.equal(['schedule[0].batchSize', 'schedule[0].optimizer.lr']);
  });

  it('a worker lost mid-trial: the trial runs again, the configuration is told once', async () => {
    const out = tempDir('afa-search-');
    const fake: FakeRun = { started: [], curve, crash: (index, attempt) => index === 1 && attempt === 1 };
    const outcome = await runSweep(tpeSweep(4), { outDir: out, slots: fakeSlots(2, fake) });
    expectAgreement(outcome.records, await readStudy(join(out, 'study.journal')), 2);
    expect(outcome.records.filter((r) => r.attempts === 2)).to.have.length(1);
    expect(outcome.records.find((r) => r.attempts === 2)!.retries![0]!.error).to.match(/the worker process died/);
  });

  it('GP completes its budget; CMA-ES without the cmaes package is refused before anything runs, saying how to install it', async function () {
    const space = { 'schedule[0].optimizer.lr': logUniform(1e-3, 1) };
    const gp = await runSweep(sweep({ name: 'gp', base: base(9), search: 'gp', budget: 12, space }), { outDir: tempDir('afa-gp-'), slots: fakeSlots(2, { started: [], curve }) });
    expect(gp.records.filter((r) => r.status === 'completed')).to.have.length(12);
    if ((await execa(PYTHON, ['-c', 'import cmaes'], { reject: false })).exitCode === 0) return; // installed here: nothing to refuse
    const refused = await runSweep(sweep({ name: 'cma', base: base(9), search: 'cmaes', budget: 4, space }), { outDir: tempDir('afa-cma-'),
      slots: fakeSlots(1, { started: [], curve }) }).then(() => undefined, (e: unknown) => e);
    expect(refused).to.be.instanceOf(UsageError);
    expect((refused as Error).message).to.match(/--search cmaes needs the cmaes package in the worker's Python \(pip install cmaes\)/);
  });

  it('grid search pruned by ASHA asks Optuna for exactly the planned configurations, with the planned trial ids', async () => {
    const out = tempDir('afa-search-');
    const s = sweep({ name: 'grid-asha', base: base(), space: { 'schedule[0].optimizer.lr': grid([0.001, 0.01, 0.1, 1]) }, seeds: [0] });
    const outcome = await runSweep(s, { outDir: out, slots: fakeSlots(2, { started: [], curve }), earlyStop: 'asha', warmupSteps: 3 });
    expect(outcome.records.map((r) => r.trialId).sort()).to.deep.equal(planTrials(s).map((t) => t.trialId).sort());
    expect((await readStudy(join(out, 'study.journal'))).map((t) => t.state).filter((x) => x === 'RUNNING')).to.deep.equal([]);
  });

  it('an interrupted sweep resumes its own study: nothing re-asked, the interrupted configurations run once, none twice', async () => {
    const out = tempDir('afa-search-');
    const controller = new AbortController();
    let ended = 0;
    await runSweep(tpeSweep(6), { outDir: out, slots: fakeSlots(2, { started: [], curve }), signal: controller.signal,
      onEvent: (e) => { if (e.type === 'trial-end' && ++ended === 3) controller.abort(); } });
    const before = await readStudy(join(out, 'study.journal'));
    expect(before.some((t) => t.state === 'RUNNING'), 'the interrupt left a configuration running').to.equal(true);
    const fake: FakeRun = { started: [], curve };
    const outcome = await runSweep(tpeSweep(6), { outDir: out, slots: fakeSlots(2, fake), resume: true });
    const study = await readStudy(join(out, 'study.journal'));
    expect(study).to.have.length(6);
    expectAgreement(readRecords(join(out, 'results.jsonl')).records, study, 2);
    expect(outcome.records).to.have.length(12);
    expect(fake.started.length, 'the resumed run ran only what was missing').to.equal(12 - ended);
  });

  it('two drivers share one study through its storage: each configuration in one driver\'s results, the study holds the budget', async () => {
    const journal = join(tempDir('afa-shared-'), 'shared.journal');
    const [a, b] = [tempDir('afa-driver-'), tempDir('afa-driver-')];
    const s = tpeSweep(8, 'shared');
    // Each driver's first run waits for the other's: on a loaded machine one driver could otherwise
    // take the whole budget before the other's search process is up.
    let release!: () => void;
    const both = new Promise<void>((r) => (release = r));
    const fakes: FakeRun[] = [0, 1].map(() => ({ started: [], curve, gate: () => {
      if (fakes.every((f) => f.started.length > 0)) release();
      return both;
    } }));
    await Promise.all([a, b].map((out, i) => runSweep(s, { outDir: out, slots: fakeSlots(1, fakes[i]!), storage: journal })));
    const records = [a, b].map((out) => readRecords(join(out, 'results.jsonl')).records);
    const configs = records.map((rs) => new Set(rs.map((r) => r.configId)));
    expect([...configs[0]!].filter((c) => configs[1]!.has(c)), 'no configuration in both').to.deep.equal([]);
    expect(configs[0]!.size + configs[1]!.size).to.equal(8);
    expect(configs[0]!.size && configs[1]!.size, 'both drivers worked').to.be.greaterThan(0);
    const study = await readStudy(journal);
    expectAgreement([...records[0]!, ...records[1]!], study, 2);
    expect(new Set(study.map((t) => t.driver)).size).to.equal(2);
  });

  it('a configuration asked again after it finished is told its value by the study, not run again, and counted as done', async () => {
    const out = tempDir('afa-search-');
    const fake: FakeRun = { started: [], curve };
    const s = sweep({ name: 'repeats', base: base(), search: 'tpe', budget: 3, seeds: [0, 1], space: { 'schedule[0].optimizer.lr': choice({ only: 0.05 }) } });
    const repeats: Extract<SweepEvent, { type: 'repeat' }>[] = [];
    const outcome = await runSweep(s, { outDir: out, slots: fakeSlots(1, fake), onEvent: (e) => void (e.type === 'repeat' && repeats.push(e)) });
    expect(fake.started, 'one configuration, run once per seed').to.deep.equal(['search[lr=only] seed 0', 'search[lr=only] seed 1']);
    expect(outcome.records).to.have.length(2);
    expect(repeats.map((r) => [r.number, r.repeatOf, r.seeds])).to.deep.equal([[1, 0, 2], [2, 0, 2]]);
    const study = await readStudy(join(out, 'study.journal'));
    const value = outcome.records.reduce((a, r) => a + r.metrics.bestValAccuracy, 0) / 2;
    expect(study.map((t) => [t.number, t.state, t.value])).to.deep.equal([[0, 'COMPLETE', value], [1, 'COMPLETE', value], [2, 'COMPLETE', value]]);
  });

  it('a second driver on a directory in use is refused, naming the first; one sharing its --storage is let in', async () => {
    const out = tempDir('afa-lock-');
    const journal = join(out, 'study.journal');
    const first = runSweep(tpeSweep(4, 'locked'), { outDir: out, slots: fakeSlots(1, { started: [], curve }), storage: journal });
    for (let i = 0; i < 2000 && !(existsSync(join(out, 'locks')) && readdirSync(join(out, 'locks')).length); i++) await new Promise((r) => setImmediate(r));
    const refused = await runSweep(tpeSweep(4, 'locked'), { outDir: out, slots: fakeSlots(1, { started: [], curve }), resume: true })
      .then(() => undefined, (e: unknown) => e);
    expect(refused).to.be.instanceOf(UsageError);
    expect((refused as UsageError).message).to.match(new RegExp(`is in use by another afa sweep \\(pid ${process.pid} on .*sharing the study in ${journal}`));
    const sharing = runSweep(tpeSweep(4, 'locked'), { outDir: out, slots: fakeSlots(1, { started: [], curve }), storage: journal, resume: true });
    await Promise.all([first, sharing]);
    expect(new Set(readRecords(join(out, 'results.jsonl')).records.map((r) => r.trialId)).size).to.equal(8); // 4 configurations x 2 seeds, once each
    expect(readdirSync(join(out, 'locks'))).to.deep.equal([]);
  });
});

describe('adaptive search on a real task through the CLI (real workers, real data)', function () {
  this.timeout(600_000);
  const [node, cliArgs] = AFA_CLI;

  it('afa sweep --search tpe --early-stop asha completes its budget; after SIGKILL of the CLI, --resume loses nothing and duplicates nothing', async () => {
    const out = tempDir('afa-tpe-');
    const env = { AFA_TEST_SWEEP_STEPS: '12' };
    const args = ['sweep', 'test/fixtures/tiny-search.ts', '--search', 'tpe', '--budget', '5', '--early-stop', 'asha', '--warmup-steps', '3',
      '--workers', '2', '--threads', '1', '--out', out];
    const cli = execa(node, [...cliArgs, ...args], { reject: false, env, buffer: true });
    let seen = '';
    cli.stderr!.on('data', (chunk: Buffer) => {
      seen += String(chunk);
      if ((seen.match(/^(completed|pruned) /gm) ?? []).length >= 2) cli.kill('SIGKILL');
    });
    const killed = await cli;
    expect(killed.signal, killed.stderr).to.equal('SIGKILL');
    const resumed = await execa(node, [...cliArgs, ...args, '--resume'], { reject: false, env });
    expect(resumed.exitCode, resumed.stderr).to.equal(0);
    const records = readRecords(join(out, 'results.jsonl')).records;
    const study = await readStudy(join(out, 'study.journal'));
    expect(study).to.have.length(5);
    expect(records).to.have.length(5);
    expect(new Set(records.map((r) => r.trialId)).size).to.equal(5);
    expect(study.filter((t) => t.state === 'RUNNING')).to.deep.equal([]);
    expect(resumed.stdout).to.match(/best configuration \(runnable: afa run/);
  });
});

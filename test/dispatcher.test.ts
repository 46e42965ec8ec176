// The sweep's dispatch driven with fake slots (no worker, no process): the worker-loss and drain
// policy, checked transition by transition. The real-worker fault tests (faults.test.ts, the Ray
// suite) check the same paths once end to end.
import { expect } from 'chai';
import { CancelledError, grid, sweep, WorkerCrashedError } from '../ts-sdk/src/index.js';
import { planTrials, type TrialRecord } from '../ts-sdk/src/sweep/index.js';
import { Dispatcher, TrialQueue, type DispatchSlot, type SlotWorker } from '../ts-sdk/src/sweep/dispatcher.js';
import { retryOnWorkerLoss } from '../ts-sdk/src/sweep/retry.js';
import { failedRecord, runTrial } from '../ts-sdk/src/sweep/trial-run.js';
import { MedianStoppingRule } from '../ts-sdk/src/sweep/early-stop.js';
import type { TrialPlan } from '../ts-sdk/src/sweep/trials.js';
import type { Worker } from '../ts-sdk/src/worker/worker.js';
import { tinyFineTune } from './fixtures/specs.js';

const trials = (n: number) => planTrials(sweep({ name: 'd', base: tinyFineTune(), space: { 'schedule[0].optimizer.lr': grid(Array.from({ length: n }, (_, i) => 0.01 * (i + 1))) } }));

/** A fake worker: `stop` counts, nothing runs. */
class FakeWorker implements SlotWorker {
  stopped = 0;
  constructor(readonly id: string) {}
  async stop(): Promise<void> {
    this.stopped += 1;
  }
}

/** A promise whose resolution the test controls. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

function slot(name: string, create: (signal?: AbortSignal) => Promise<FakeWorker>): DispatchSlot<FakeWorker> {
  return { name, worker: new FakeWorker(`${name}#0`), create };
}

const completed = (trial: TrialPlan): TrialRecord => ({ ...failedRecord(trial, ''), status: 'completed', error: undefined });
const crash = () => new WorkerCrashedError('RunStage: the worker process died (killed by SIGKILL)', '', null, 'SIGKILL');

/** Resolves when `predicate` holds, checked after every microtask turn (no clock). */
async function until(predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !predicate(); i++) await new Promise((r) => setImmediate(r));
  if (!predicate()) throw new Error('condition never held');
}

function dispatcher(slots: DispatchSlot<FakeWorker>[], plan: TrialPlan[], run: (s: DispatchSlot<FakeWorker>, t: TrialPlan) => Promise<TrialRecord>,
  maxAttempts = 2) {
  const records: Array<{ trialId: string; status: string; attempt: number; slot: string; error?: string }> = [];
  const events: string[] = [];
  const d = new Dispatcher({
    slots, source: new TrialQueue(plan), retry: retryOnWorkerLoss(maxAttempts), failed: failedRecord, run: (s, t) => run(s, t),
    record: (t, r, attempt, s) => records.push({ trialId: t.trialId, status: r.status, attempt, slot: s.name, error: r.error }),
    emit: (e) => events.push(e.type === 'slot-lost' ? `lost ${e.slot} (${e.live} left)` : `${e.type} ${e.slot} ${e.trial.trialId.slice(0, 4)} #${e.attempt}`),
  });
  return { d, records, events };
}

describe('sweep dispatch (fake slots, no worker)', () => {
  it('a trial whose worker is lost mid-run goes to the head of the line for a live slot, and the lost slot comes back with a new worker', async () => {
    const [a, b, c] = trials(3);
    const recreated = deferred<FakeWorker>();
    const s1 = slot('s1', () => recreated.promise);
    const s2 = slot('s2', async () => new FakeWorker('s2#1'));
    const calls: Array<{ slot: string; trial: string; p: ReturnType<typeof deferred<TrialRecord>> }> = [];
    const { d, records, events } = dispatcher([s1, s2], [a!, b!, c!], (s, t) => {
      const p = deferred<TrialRecord>();
      calls.push({ slot: s.name, trial: t.trialId, p });
      return p.promise;
    });
    const done = d.run();
    await until(() => calls.length === 2);
    const first = s1.worker!;
    calls[0]!.p.reject(crash()); // s1 ran a
    await until(() => d.state('s1') === 'recovering');
    expect(first.stopped).to.equal(1); // the dead worker is let go before a new one is asked for
    // s2 is busy with b: a waits at the head of the line, before c; s2 takes it when it is free.
    calls[1]!.p.resolve(completed(b!));
    await until(() => calls.length === 3);
    expect([calls[2]!.slot, calls[2]!.trial]).to.deep.equal(['s2', a!.trialId]);
    recreated.resolve(new FakeWorker('s1#1'));
    await until(() => calls.length === 4); // s1 is back and takes c
    expect([calls[3]!.slot, calls[3]!.trial]).to.deep.equal(['s1', c!.trialId]);
    calls[2]!.p.resolve(completed(a!));
    calls[3]!.p.resolve(completed(c!));
    await done;
    expect(records.map((r) => [r.trialId, r.status, r.attempt, r.slot])).to.deep.equal([
      [b!.trialId, 'completed', 1, 's2'], [a!.trialId, 'completed', 2, 's2'], [c!.trialId, 'completed', 1, 's1']]);
    expect(events.filter((e) => e.startsWith('trial-retry'))).to.deep.equal([`trial-retry s1 ${a!.trialId.slice(0, 4)} #1`]);
    expect(d.transitions.filter((t) => t.slot === 's1').map((t) => t.to)).to.deep.equal(['running', 'recovering', 'idle', 'running', 'idle', 'done']);
  });

  it('a slot whose worker never comes back retires; with no slot left, the rest is recorded failed for --resume', async () => {
    const [a, b, c] = trials(3);
    const s1 = slot('s1', async () => {
      throw new Error('Ray did not restart worker 1 within 180000 ms');
    });
    const { d, records, events } = dispatcher([s1], [a!, b!, c!], async () => {
      throw crash();
    });
    await d.run();
    expect(d.state('s1')).to.equal('retired');
    expect(events).to.include('lost s1 (0 left)');
    // a's attempt was retried (requeued), then the slot was gone: a, b and c are all failed, none lost.
    expect(records.map((r) => [r.trialId, r.status])).to.deep.equal([[a!.trialId, 'failed'], [b!.trialId, 'failed'], [c!.trialId, 'failed']]);
    expect(records.every((r) => /^no worker left: Ray did not restart/.test(r.error!))).to.equal(true);
  });

  it('a slot waiting for its worker stops waiting once nothing is left and no other slot can hand it work (the drain)', async () => {
    const [a, b] = trials(2);
    let drained = false;
    // s1's worker never comes back on its own: only the drain ends its wait.
    const s1 = slot('s1', (signal) => new Promise<FakeWorker>((_, reject) => signal!.addEventListener('abort', () => {
      drained = true;
      reject(new Error('aborted'));
    }, { once: true })));
    const s2 = slot('s2', async () => new FakeWorker('s2#1'));
    const gate = deferred<TrialRecord>();
    const { d, records } = dispatcher([s1, s2], [a!, b!], async (s, t) => {
      if (s.name === 's1') throw crash();
      await gate.promise;
      return completed(t);
    }, 1); // one attempt: the lost trial is recorded failed, nothing is requeued
    const running = d.run();
    await until(() => d.state('s1') === 'recovering' && d.state('s2') === 'running');
    await new Promise((r) => setImmediate(r));
    expect(drained).to.equal(false); // s2 still runs: its trial could still fail and need s1
    gate.resolve(completed(b!));
    await running;
    expect(drained).to.equal(true);
    expect(d.state('s1')).to.equal('done'); // drained, not retired: no worker was given up on while work was left
    expect(records.map((r) => [r.trialId, r.status])).to.deep.equal([[a!.trialId, 'failed'], [b!.trialId, 'completed']]);
  });

  it('an interrupt ends every slot; the trial it cut short is not recorded', async () => {
    const [a] = trials(1);
    const controller = new AbortController();
    const records: string[] = [];
    const d = new Dispatcher({
      slots: [slot('s1', async () => new FakeWorker('x'))], source: new TrialQueue([a!]), retry: retryOnWorkerLoss(2), failed: failedRecord,
      signal: controller.signal, record: (t) => records.push(t.trialId),
      run: () => new Promise((_, reject) => controller.signal.addEventListener('abort', () => reject(new Error('cancelled')))),
    });
    const done = d.run();
    await until(() => d.state('s1') === 'running');
    controller.abort();
    await done;
    expect(records).to.deep.equal([]);
    expect(d.state('s1')).to.equal('done');
  });

  it('a scheduler\'s stop at an eval point ends the trial as pruned with its curve, not as a failure', async () => {
    const [trial] = trials(1);
    const rule = new MedianStoppingRule({ minTrials: 1 });
    rule.onTrialComplete({ ...completed(trial!), curve: [{ stage: 0, step: 3, globalStep: 3, accuracy: 0.9, loss: 0.1 }] });
    let cancelled = false;
    const fake = {
      run: (_spec: unknown, options: { signal: AbortSignal }) => {
        const events = (async function* () {
          yield { type: 'stage-start', phase: 'transfer', stage: 'none', index: 0, iterations: 6, regularizer: 'none' };
          yield { type: 'eval', phase: 'transfer', stage: 'none', iterations: 6, step: 3, split: 'val', loss: 2, accuracy: 0.2, isBest: true };
          await new Promise((r) => setImmediate(r));
          cancelled = options.signal.aborted;
          throw new CancelledError('stage none was cancelled');
        })();
        const result = new Promise(() => undefined);
        return { events, result };
      },
    } as unknown as Worker;
    const record = await runTrial({ worker: fake, trial: trial!, scheduler: rule });
    expect(cancelled).to.equal(true);
    expect(record.status).to.equal('pruned');
    expect(record.error).to.match(/below the median 0\.900 of 1 completed trials at step 3/);
    expect(record.curve.map((p) => p.accuracy)).to.deep.equal([0.2]);
  });
});

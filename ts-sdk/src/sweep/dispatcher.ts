/**
 * The sweep's dispatch, as a state machine over worker slots: each slot takes the next trial when
 * it is free, a trial whose worker was lost goes back to the head of the line (a live slot takes it)
 * while its slot waits for a new worker, a slot whose worker does not come back retires, and a slot
 * stops waiting once nothing is left for it to run (the drain). It knows trials, slots and a retry
 * policy, nothing of gRPC or files: the runner gives it a `run` function and a `record` callback, so
 * the policy is tested with fake slots (test/dispatcher.test.ts) as well as by killing real workers.
 *
 * Slot states: `starting` (its first worker) -> `idle` (has a worker, no trial) -> `running` ->
 * `idle` ...; `running` -> `recovering` (worker lost, waiting for `create`) -> `idle` or `retired`;
 * any -> `done` (nothing left, or the sweep was interrupted).
 */
import type { RetryPolicy } from './retry.js';
import { isWorkerLoss } from './retry.js';
import type { TrialRecord } from './store.js';
import type { TrialPlan } from './trials.js';

export type SlotState = 'starting' | 'idle' | 'running' | 'recovering' | 'retired' | 'done';

/** What the dispatcher needs of a worker: a way to let it go. */
export interface SlotWorker {
  stop(): Promise<void>;
}

/** One place a trial runs: its current worker and how to get a new one (see `sweep/pool.ts`). */
export interface DispatchSlot<W extends SlotWorker = SlotWorker> {
  readonly name: string;
  worker: W | undefined;
  /** A fresh worker for this slot (after a crash); remote slots reconnect, Ray slots wait for Ray's restart. */
  readonly create: (signal?: AbortSignal) => Promise<W>;
  /** The machine the slot's current worker runs on, for trial records. */
  node?: string;
}

/** Where trials come from: a fixed plan (grid, random) or a searcher asked as slots free. */
export interface TrialSource {
  /** The next trial to run, or undefined when none is left (retries come first). */
  next(): Promise<TrialPlan | undefined>;
  /** A trial to run again (its worker was lost): first in line. */
  retry(trial: TrialPlan): void;
  /** True when `next` would return undefined: nothing left to run, no retry pending. */
  readonly exhausted: boolean;
  /** Takes out every trial not yet run (they are recorded as failed when no worker is left). */
  drain(): TrialPlan[];
}

/** A fixed list of trials in order, retries in front. */
export class TrialQueue implements TrialSource {
  private readonly items: TrialPlan[];
  constructor(trials: readonly TrialPlan[]) {
    this.items = [...trials];
  }
  async next(): Promise<TrialPlan | undefined> {
    return this.items.shift();
  }
  retry(trial: TrialPlan): void {
    this.items.unshift(trial);
  }
  get exhausted(): boolean {
    return this.items.length === 0;
  }
  drain(): TrialPlan[] {
    return this.items.splice(0);
  }
}

/** What happened, for the runner's events: each trial's start and retry, a slot gone. */
export type DispatchEvent =
  | { type: 'trial-start'; trial: TrialPlan; slot: string; attempt: number }
  | { type: 'trial-retry'; trial: TrialPlan; slot: string; attempt: number; error: string }
  | { type: 'slot-lost'; slot: string; error: string; live: number };

export interface DispatcherOptions<W extends SlotWorker> {
  slots: DispatchSlot<W>[];
  source: TrialSource;
  /** Runs one attempt of a trial on a slot's worker; resolves with its record, rejects with why it failed. */
  run: (slot: DispatchSlot<W>, trial: TrialPlan, signal: AbortSignal | undefined) => Promise<TrialRecord>;
  /** Whether a failed attempt runs again. */
  retry: RetryPolicy;
  /** A record for a trial that failed for good (its error message). */
  failed: (trial: TrialPlan, error: string) => TrialRecord;
  /** Every finished attempt's record (completed, pruned, or failed for good), with its attempt count. */
  record: (trial: TrialPlan, record: TrialRecord, attempt: number, slot: DispatchSlot<W>, startedMs: number, retries: TrialRetry[]) => void;
  emit?: (event: DispatchEvent) => void;
  signal?: AbortSignal;
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** An attempt that failed and was tried again: where it ran and why it failed (its first line: a crash's names its session and model). */
export interface TrialRetry {
  attempt: number;
  worker: string;
  error: string;
}

/** At most this many characters of a retried attempt's error are kept in its record. */
const RETRY_ERROR_CHARS = 1000;

export class Dispatcher<W extends SlotWorker> {
  private readonly states = new Map<DispatchSlot<W>, SlotState>();
  private readonly attempts = new Map<string, number>();
  private readonly retries = new Map<string, TrialRetry[]>();
  /** Every state change, in order (for tests and logs). */
  readonly transitions: Array<{ slot: string; from: SlotState; to: SlotState }> = [];
  private readonly drained = new AbortController();

  constructor(private readonly options: DispatcherOptions<W>) {
    for (const slot of options.slots) this.states.set(slot, slot.worker ? 'idle' : 'starting');
  }

  /** Each slot's state now. */
  state(slotName: string): SlotState | undefined {
    for (const [slot, state] of this.states) if (slot.name === slotName) return state;
    return undefined;
  }

  private set(slot: DispatchSlot<W>, to: SlotState): void {
    const from = this.states.get(slot)!;
    if (from === to) return;
    this.states.set(slot, to);
    this.transitions.push({ slot: slot.name, from, to });
    this.checkDrained();
  }

  private count(...states: SlotState[]): number {
    return [...this.states.values()].filter((s) => states.includes(s)).length;
  }

  /** Waiting for a worker is pointless once nothing is left and no slot could produce a retry. */
  private checkDrained(): void {
    if (this.options.source.exhausted && this.count('idle', 'running', 'starting') === 0) this.drained.abort();
  }

  /** Runs until every trial is recorded, no slot is left, or the signal aborts. */
  async run(): Promise<void> {
    await Promise.all(this.options.slots.map((slot) => this.loop(slot).finally(() => {
      if (this.states.get(slot) !== 'retired') this.set(slot, 'done');
    })));
  }

  private async loop(slot: DispatchSlot<W>): Promise<void> {
    const { source, signal } = this.options;
    if (!slot.worker && !(await this.recover(slot, 'starting'))) return;
    this.set(slot, 'idle');
    while (!signal?.aborted) {
      const trial = await source.next();
      if (!trial || signal?.aborted) {
        if (trial) source.retry(trial);
        return;
      }
      const outcome = await this.attempt(slot, trial);
      if (outcome === 'stop') return;
      if (outcome === 'lost' && !(await this.recover(slot, 'recovering'))) return;
      this.set(slot, 'idle');
    }
  }

  /** One attempt; 'lost' when the slot's worker went with it, 'stop' when the sweep was interrupted. */
  private async attempt(slot: DispatchSlot<W>, trial: TrialPlan): Promise<'ok' | 'lost' | 'stop'> {
    const { signal, retry } = this.options;
    const attempt = (this.attempts.get(trial.trialId) ?? 0) + 1;
    this.attempts.set(trial.trialId, attempt);
    this.set(slot, 'running');
    this.options.emit?.({ type: 'trial-start', trial, slot: slot.name, attempt });
    const started = performance.now();
    try {
      this.options.record(trial, await this.options.run(slot, trial, signal), attempt, slot, started, this.retriesOf(trial));
      return 'ok';
    } catch (error) {
      if (signal?.aborted) return 'stop'; // interrupted: an unfinished trial is not recorded
      if (retry.shouldRetry(error, attempt)) {
        this.options.emit?.({ type: 'trial-retry', trial, slot: slot.name, attempt, error: message(error) });
        const retried = { attempt, worker: slot.name, error: message(error).split('\n')[0]!.slice(0, RETRY_ERROR_CHARS) };
        this.retries.set(trial.trialId, [...this.retriesOf(trial), retried]);
        this.options.source.retry(trial); // first in line for a live slot, while this one comes back
      } else {
        this.options.record(trial, this.options.failed(trial, message(error)), attempt, slot, started, this.retriesOf(trial));
      }
      return isWorkerLoss(error) ? 'lost' : 'ok';
    }
  }

  private retriesOf(trial: TrialPlan): TrialRetry[] {
    return this.retries.get(trial.trialId) ?? [];
  }

  /** A new worker for the slot; false when it cannot get one (retired) or need not (drained, interrupted). */
  private async recover(slot: DispatchSlot<W>, state: 'starting' | 'recovering'): Promise<boolean> {
    const { signal } = this.options;
    await slot.worker?.stop().catch(() => undefined);
    slot.worker = undefined;
    this.set(slot, state);
    try {
      slot.worker = await slot.create(signal ? AbortSignal.any([signal, this.drained.signal]) : this.drained.signal);
      return true;
    } catch (lost) {
      if (signal?.aborted || (this.drained.signal.aborted && this.options.source.exhausted)) return false;
      this.set(slot, 'retired');
      const live = this.options.slots.filter((s) => !['retired', 'done'].includes(this.states.get(s)!)).length;
      this.options.emit?.({ type: 'slot-lost', slot: slot.name, error: message(lost), live });
      if (live === 0) {
        // No worker left to run what remains: each is recorded as failed, and a --resume runs it.
        for (const left of this.options.source.drain()) {
          this.options.record(left, this.options.failed(left, `no worker left: ${message(lost)}`), this.attempts.get(left.trialId) ?? 0,
            slot, performance.now(), this.retriesOf(left));
        }
      }
      return false;
    }
  }
}

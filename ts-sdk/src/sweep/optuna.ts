/**
 * An Optuna study, held by `python -m afa_worker search` (spawned through the one door to Python)
 * and asked over its line channel: ask for a configuration, report a validation point (the
 * pruner's verdict comes back), tell the outcome, list what a resumed study holds as running, and
 * summarise. The sweep's dimensions become Optuna distributions: a grid or variants dimension is
 * categorical over its values' indices, logUniform a log float, intUniform an int.
 */
import { AfaError, UsageError } from '../errors.js';
import type { SearchRequest, SearchResponse, SearchSummary } from '../gen/afa/v1/process.js';
import { SearchOutcome } from '../gen/afa/v1/process.js';
import { PythonProcess } from '../worker/python-process.js';
import type { Dimension, SweepSpec } from './space.js';
import { formatValue } from './trials.js';

/** Who draws the values: Optuna's samplers, or `fixed` (grid and random configurations the SDK planned, pruned by Optuna). */
export type SamplerName = 'tpe' | 'gp' | 'cmaes' | 'random' | 'fixed';
export type PrunerName = 'none' | 'median' | 'asha' | 'hyperband';

export interface StudyOptions {
  /** A journal file's path, or a database URL (`postgresql+psycopg://user:pass@host/db`). */
  storage: string;
  study: string;
  sampler: SamplerName;
  pruner: PrunerName;
  /** Steps before a pruner may stop a trial. @default 0 */
  warmupSteps?: number;
  /** Finished trials the median pruner waits for. @default 3 */
  minTrials?: number;
  /** A trial's full length in steps (Hyperband's max resource). */
  maxSteps?: number;
  /** Python with the worker package. @default as for Worker.start */
  python?: string;
  /** Who asks: {@link driverName}'s (see {@link isGoneDriverOf}). */
  driver: string;
  /** The sampler's seed. @default the sweep's searchSeed */
  seed?: number;
}

export interface Asked {
  number: number;
  values: Record<string, unknown>;
  labels: Record<string, string>;
  /** The completed trial these values already finished as (by this driver or another sharing the study): this one is told its value, and not run. */
  repeatOf?: number;
}

export type Outcome = { kind: 'complete'; value: number } | { kind: 'pruned' } | { kind: 'failed' };

/** The dimension as the search process takes it. */
function distribution(dim: Dimension): Record<string, unknown> {
  switch (dim.kind) {
    case 'grid':
      return { kind: 'categorical', n: dim.values.length };
    case 'uniform':
      return { kind: 'float', low: dim.low, high: dim.high };
    case 'logUniform':
      return { kind: 'float', low: dim.low, high: dim.high, log: true };
    case 'intUniform':
      return { kind: 'int', low: dim.low, high: dim.high };
  }
}

/** Optuna's parameters (JSON text per dimension) as the sweep's values and labels. */
export function fromParams(sweep: SweepSpec, params: Record<string, string>): { values: Record<string, unknown>; labels: Record<string, string> } {
  const values: Record<string, unknown> = {};
  const labels: Record<string, string> = {};
  for (const [key, dim] of Object.entries(sweep.space)) {
    const raw = params[key];
    if (raw === undefined) throw new AfaError(`the study's trial has no value for the dimension ${key}: it belongs to another sweep`);
    const parsed = JSON.parse(raw) as number;
    if (dim.kind === 'grid') {
      if (!Number.isInteger(parsed) || parsed < 0 || parsed >= dim.values.length) throw new AfaError(`the study's ${key} index ${raw} is out of range`);
      values[key] = dim.values[parsed];
      labels[key] = dim.labels?.[parsed] ?? formatValue(dim.values[parsed]);
    } else {
      values[key] = parsed;
      labels[key] = formatValue(parsed);
    }
  }
  return { values, labels };
}

/** The sweep's values as Optuna's parameters (a grid value by its index), to ask with fixed values. */
export function toParams(sweep: SweepSpec, values: Record<string, unknown>): Record<string, string> {
  const params: Record<string, string> = {};
  for (const [key, dim] of Object.entries(sweep.space)) {
    if (dim.kind === 'grid') {
      const index = dim.values.findIndex((v) => JSON.stringify(v) === JSON.stringify(values[key]));
      params[key] = JSON.stringify(index);
    } else {
      params[key] = JSON.stringify(values[key]);
    }
  }
  return params;
}

/** Drivers running in this process (a process may run several sweeps, one after another or at once). */
const LIVE = new Set<string>();

/** A new driver's name in the study, `host:pid:run:directory`; live until `retire`. */
export function driverName(host: string, dir: string): string {
  const name = `${host}:${process.pid}:${Math.random().toString(36).slice(2, 10)}:${dir}`;
  LIVE.add(name);
  return name;
}

export function retireDriver(name: string): void {
  LIVE.delete(name);
}

/**
 * Whether `asker` (a trial's driver) is a driver of `me`'s machine and directory that no longer runs
 * (its process is gone, or it was an earlier run of this process): its trials were interrupted and
 * are `me`'s to finish. A live driver's (one sharing the directory and the study) are left to it;
 * another machine's or directory's are never ours.
 */
export function isGoneDriverOf(asker: string, me: string): boolean {
  const [host, pid, , ...dir] = asker.split(':');
  const [myHost, , , ...myDir] = me.split(':');
  if (host !== myHost || dir.join(':') !== myDir.join(':') || LIVE.has(asker)) return false;
  if (Number(pid) === process.pid) return true;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

const OUTCOMES = { complete: SearchOutcome.SEARCH_OUTCOME_COMPLETE, pruned: SearchOutcome.SEARCH_OUTCOME_PRUNED, failed: SearchOutcome.SEARCH_OUTCOME_FAILED };

export class OptunaStudy {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: SearchResponse) => void; reject: (e: Error) => void }>();

  private constructor(private readonly process: PythonProcess, private readonly sweep: SweepSpec, readonly counts: Record<string, number>,
    private readonly driver: string) {
    process.onMessage((message) => {
      if (message.message?.$case !== 'search') return;
      const response = message.message.value;
      this.pending.get(response.id)?.resolve(response);
      this.pending.delete(response.id);
    });
    void process.exited.then(() => {
      const why = new AfaError(`the search process exited: ${process.stderrTail(10) || 'no message'}`);
      for (const waiter of this.pending.values()) waiter.reject(why);
      this.pending.clear();
    });
  }

  /** Opens (or creates) the study; an unreachable storage or a Python without Optuna fails here, saying so. */
  static async open(sweep: SweepSpec, options: StudyOptions): Promise<OptunaStudy> {
    const space = Object.fromEntries(Object.entries(sweep.space).map(([k, d]) => [k, distribution(d)]));
    const args = ['--storage', options.storage, '--study', options.study, '--space', JSON.stringify(space), '--sampler', options.sampler,
      '--seed', String(options.seed ?? sweep.searchSeed), '--direction', sweep.goal === 'max' ? 'maximize' : 'minimize', '--pruner', options.pruner,
      '--warmup-steps', String(options.warmupSteps ?? 0), '--min-trials', String(options.minTrials ?? 3), '--max-steps', String(options.maxSteps ?? 0)];
    let process: PythonProcess;
    try {
      process = await PythonProcess.start({ command: 'search', args, python: options.python, name: 'the search process', startTimeoutMs: 120_000 });
    } catch (error) {
      throw new UsageError('--storage', `cannot open the study: ${(error as Error).message.split('\n')[0]}`);
    }
    const ready = process.ready.detail?.$case === 'search' ? process.ready.detail.value : undefined;
    return new OptunaStudy(process, sweep, { complete: ready?.complete ?? 0, pruned: ready?.pruned ?? 0, failed: ready?.failed ?? 0,
      running: ready?.running ?? 0 }, options.driver);
  }

  private call(request: NonNullable<SearchRequest['request']>): Promise<SearchResponse> {
    const id = this.nextId++;
    return new Promise<SearchResponse>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (!this.process.send({ input: { $case: 'search', value: { id, request } } }) && this.process.exit) {
        this.pending.delete(id);
        reject(new AfaError(`the search process is gone: ${this.process.stderrTail(10)}`));
      }
    }).then((response) => {
      if (response.response?.$case === 'error') throw new AfaError(`the search process: ${response.response.value.message}`);
      return response;
    });
  }

  /** The next configuration (values drawn by the sampler, or `fixed`), or undefined once the study holds `limit` trials. */
  async ask(limit: number, fixed?: Record<string, unknown>): Promise<Asked | undefined> {
    const r = await this.call({ $case: 'ask', value: { limit, fixed: fixed ? toParams(this.sweep, fixed) : {}, driver: this.driver } });
    if (r.response?.$case !== 'asked' || r.response.value.exhausted) return undefined;
    const { number, repeatOf, params } = r.response.value;
    return { number, ...fromParams(this.sweep, params), ...(repeatOf === undefined ? {} : { repeatOf }) };
  }

  async tell(number: number, outcome: Outcome): Promise<void> {
    await this.call({ $case: 'tell', value: { number, outcome: OUTCOMES[outcome.kind], value: outcome.kind === 'complete' ? outcome.value : 0 } });
  }

  /** A validation point of configuration `number`; resolves with the pruner's reason to stop it, or undefined. */
  async report(number: number, step: number, value: number): Promise<string | undefined> {
    const r = await this.call({ $case: 'report', value: { number, step, value } });
    return r.response?.$case === 'reported' && r.response.value.prune ? r.response.value.reason : undefined;
  }

  /** Configurations the study holds as asked and never told by a driver of this directory on this machine that is gone (SIGKILL, SIGINT). */
  async abandoned(): Promise<Asked[]> {
    const r = await this.call({ $case: 'running', value: {} });
    if (r.response?.$case !== 'running') return [];
    return r.response.value.trials.filter((t) => isGoneDriverOf(t.driver, this.driver))
      .map((t) => ({ number: t.number, ...fromParams(this.sweep, t.params) }));
  }

  async summary(): Promise<SearchSummary> {
    const r = await this.call({ $case: 'summary', value: {} });
    return r.response?.$case === 'summary' ? r.response.value : { trials: [], importance: {} };
  }

  async close(): Promise<void> {
    retireDriver(this.driver);
    await this.process.stop(30_000);
  }
}

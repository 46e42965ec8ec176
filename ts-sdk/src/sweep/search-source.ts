/**
 * Trials from a searcher, asked as slots free (Optuna's ask-and-tell): each configuration the
 * study gives is run once per seed; when every seed has its record, the configuration's outcome is
 * told: the mean of its completed seeds' metric, else pruned (a seed was pruned), else failed. The
 * results file is the record of truth and is written before the study is told, so after a SIGKILL
 * at any point the two agree on resume: a configuration the study holds as running has its missing
 * seeds re-run (the same values, exactly once) or, when the file has them all, is told from it.
 * Pruning judges a configuration by its first seed to reach each validation point (with one seed,
 * exactly the trial); once pruned, its running seeds stop and its unstarted ones are recorded as
 * pruned without running.
 */
import { FieldError } from '../errors.js';
import type { TrialSource } from './dispatcher.js';
import type { Asked, OptunaStudy, Outcome } from './optuna.js';
import { CONTINUE, type TrialDecision, type TrialScheduler } from './scheduler.js';
import type { SweepSpec } from './space.js';
import type { CurvePoint, TrialRecord } from './store.js';
import { trialsOf, type Assignment, type TrialPlan } from './trials.js';

interface Configuration {
  /** The study's trial that asked it (pruning reports go to it). */
  number: number;
  /** Later trials that asked the same values (a sampler may propose a configuration again): told the same outcome, not run again. */
  repeats: number[];
  outcome?: Outcome;
  trials: TrialPlan[];
  records: Map<number, TrialRecord>;
  /** Why the pruner stopped it, once it has. */
  pruned?: string;
  told: boolean;
}

export interface SearchSourceOptions {
  /** Configurations in all (the sweep's budget). */
  budget: number;
  /** The results file's latest record per trial. */
  records: readonly TrialRecord[];
  /** Grid or random configurations, asked in order with their values fixed (Optuna only prunes). */
  fixed?: readonly Assignment[];
  /** Records a trial that is not run (a pruned configuration's unstarted seed, or an invalid configuration's). */
  skip: (trial: TrialPlan, status: 'pruned' | 'failed', reason: string) => void;
  /** Values the study held as completed already (asked again): the study told this trial their value; nothing runs. */
  repeated?: (asked: Asked & { repeatOf: number }) => void;
  warn: (message: string) => void;
}

/** The value a record gives the study: its metric. */
const metricOf = (sweep: SweepSpec, r: TrialRecord) => r.metrics[sweep.metric];

export class SearchSource implements TrialSource {
  private readonly queue: TrialPlan[] = [];
  private readonly retries: TrialPlan[] = [];
  private readonly configs = new Map<string, Configuration>();
  private readonly byTrial = new Map<string, TrialRecord>();
  private readonly tells: Promise<void>[] = [];
  private fixedAt = 0;
  private done = false;
  private asking: Promise<unknown> = Promise.resolve();

  constructor(private readonly sweep: SweepSpec, private readonly study: OptunaStudy, private readonly options: SearchSourceOptions) {
    for (const r of options.records) if (r.status !== 'failed') this.byTrial.set(r.trialId, r);
  }

  /** A resumed study's running configurations: told from the file when it has every seed, else their missing seeds queued. */
  async init(): Promise<void> {
    for (const asked of await this.study.abandoned()) {
      const config = this.register(asked.number, asked);
      if (!config) continue;
      const missing = config.trials.filter((t) => !config.records.has(t.seed));
      if (missing.length) this.queue.push(...missing);
      else this.maybeTell(config);
    }
  }

  private register(number: number, a: Assignment): Configuration | undefined {
    let trials: TrialPlan[];
    try {
      trials = trialsOf(this.sweep, a);
    } catch (error) {
      if (!(error instanceof FieldError)) throw error;
      // A value the space allows that the spec refuses: the configuration fails, the search goes on.
      this.options.warn(`configuration ${number} is not a valid experiment: ${error.message}`);
      this.tells.push(this.study.tell(number, { kind: 'failed' }));
      return undefined;
    }
    const known = this.configs.get(trials[0]!.configId);
    if (known) {
      // Asked again while it runs here (the study tells a repeat of a finished one itself): told with it.
      known.repeats.push(number);
      if (known.outcome) this.tells.push(this.study.tell(number, known.outcome));
      this.options.repeated?.({ number, ...a, repeatOf: known.number });
      return undefined;
    }
    const config: Configuration = { number, repeats: [], trials, records: new Map(), told: false };
    for (const t of trials) {
      const r = this.byTrial.get(t.trialId);
      if (r) config.records.set(t.seed, r);
    }
    this.configs.set(trials[0]!.configId, config);
    return config;
  }

  /** The configuration a trial belongs to. */
  configOf(trial: TrialPlan): Configuration | undefined {
    return this.configs.get(trial.configId);
  }

  async next(): Promise<TrialPlan | undefined> {
    // One ask at a time: slots that free together must not race the study.
    const turn = this.asking.then(() => this.take());
    this.asking = turn.catch(() => undefined);
    return turn;
  }

  private async take(): Promise<TrialPlan | undefined> {
    for (;;) {
      const ready = this.retries.shift() ?? this.queue.shift();
      if (ready) {
        const config = this.configOf(ready);
        if (config?.pruned) {
          this.options.skip(ready, 'pruned', `its configuration was pruned: ${config.pruned}`);
          continue;
        }
        return ready;
      }
      if (this.done) return undefined;
      const asked = await this.askOne();
      if (!asked) {
        this.done = true;
        return undefined;
      }
      if (asked.repeatOf !== undefined) {
        // Finished before, here or by another driver of a shared study: its seeds would repeat the numbers.
        this.options.repeated?.({ ...asked, repeatOf: asked.repeatOf });
        continue;
      }
      const config = this.register(asked.number, asked);
      if (!config) continue;
      // A configuration an earlier run finished (the sampler proposed it again): told from the file, not run again.
      this.queue.push(...config.trials.filter((t) => !config.records.has(t.seed)));
      this.maybeTell(config);
    }
  }

  private async askOne(): Promise<Asked | undefined> {
    const fixed = this.options.fixed;
    if (!fixed) return this.study.ask(this.options.budget);
    while (this.fixedAt < fixed.length) {
      const a = fixed[this.fixedAt++]!;
      const trials = trialsOf(this.sweep, a);
      // Already run (every seed in the file) or already running (registered by init): not asked again.
      if (this.configs.has(trials[0]!.configId) || trials.every((t) => this.byTrial.has(t.trialId))) continue;
      const asked = await this.study.ask(0, a.values);
      return asked && { ...asked, values: a.values, labels: a.labels };
    }
    return undefined;
  }

  retry(trial: TrialPlan): void {
    this.retries.unshift(trial);
  }

  get exhausted(): boolean {
    return this.done && this.queue.length === 0 && this.retries.length === 0;
  }

  drain(): TrialPlan[] {
    this.done = true;
    return [...this.retries.splice(0), ...this.queue.splice(0)];
  }

  /** A trial's record is in the file: the configuration is told once every seed has one. */
  recorded(record: TrialRecord): void {
    const config = this.configs.get(record.configId);
    if (!config) return;
    config.records.set(record.seed, record);
    this.maybeTell(config);
  }

  private maybeTell(config: Configuration): void {
    if (config.told || config.records.size < config.trials.length) return;
    config.told = true;
    const records = [...config.records.values()];
    const completed = records.filter((r) => r.status === 'completed').map((r) => metricOf(this.sweep, r));
    const outcome: Outcome = completed.length ? { kind: 'complete', value: completed.reduce((a, b) => a + b, 0) / completed.length }
      : records.some((r) => r.status === 'pruned') ? { kind: 'pruned' } : { kind: 'failed' };
    config.outcome = outcome;
    for (const number of [config.number, ...config.repeats]) this.tells.push(this.study.tell(number, outcome));
  }

  /** Waits for every tell sent so far (before the study is summarised or closed). */
  async settled(): Promise<void> {
    await Promise.all(this.tells);
  }
}

/** Optuna's pruner as the sweep's trial scheduler: each validation point goes to the study, its verdict comes back. */
export class StudyPruning implements TrialScheduler {
  constructor(private readonly sweep: SweepSpec, private readonly study: OptunaStudy, private readonly source: SearchSource) {}

  async onTrialResult(trial: TrialPlan, point: CurvePoint): Promise<TrialDecision> {
    const config = this.source.configOf(trial);
    if (!config) return CONTINUE;
    if (config.pruned) return { action: 'stop', reason: `its configuration was pruned: ${config.pruned}` };
    const value = this.sweep.metric === 'finalValLoss' ? point.loss : point.accuracy;
    const reason = await this.study.report(config.number, point.globalStep, value);
    if (!reason) return CONTINUE;
    config.pruned = reason;
    return { action: 'stop', reason };
  }

  onTrialComplete(): void {}
}

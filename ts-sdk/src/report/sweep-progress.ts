/** Sweep progress: trials done, running, failed, pruned and an ETA; redrawn on a terminal, a line per trial otherwise. */
import type { SweepEvent } from '../sweep/runner.js';
import { configLabel } from '../sweep/trials.js';
import { secs } from '../table.js';
import { Progress } from './progress.js';

export class SweepProgress {
  private total = 0;
  private done = 0;
  private failed = 0;
  private pruned = 0;
  private readonly running = new Map<string, string>();
  private readonly durations: number[] = [];
  private workers = 1;
  private drawn = false;
  private readonly interactive: boolean;
  /** Draws a source's pretraining as `afa run` does (a bar on a terminal, lines otherwise). */
  private pretraining: Progress | undefined;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr, interactive?: boolean) {
    this.interactive = interactive ?? Boolean(stream.isTTY);
  }

  private eta(): string {
    const remaining = this.total - this.done;
    if (!this.durations.length || remaining <= 0) return '-';
    const mean = this.durations.reduce((a, b) => a + b, 0) / this.durations.length;
    return secs((mean * remaining) / this.workers);
  }

  private status(): string {
    return `trials ${this.done}/${this.total} done, ${this.running.size} running, ${this.failed} failed, ${this.pruned} pruned, ETA ${this.eta()}`;
  }

  private print(line: string): void {
    if (this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
    this.stream.write(`${line}\n`);
  }

  private redraw(): void {
    if (!this.interactive) return;
    const running = [...this.running.entries()].map(([w, t]) => `${w}: ${t}`).join(' | ');
    this.stream.write(`\r\x1b[2K${this.status()}${running ? `  [${running}]` : ''}`.slice(0, (this.stream.columns || 200) - 1));
    this.drawn = true;
  }

  handle(event: SweepEvent): void {
    switch (event.type) {
      case 'plan':
        this.total = event.toRun;
        this.workers = Math.max(1, event.workers.length);
        this.print(`sweep: ${event.total} trials, ${event.skipped} already done, ${event.toRun} to run on ${event.workers.join(', ')}`);
        break;
      case 'pretrain':
        this.pretraining ??= new Progress({ stream: this.stream, interactive: this.interactive });
        this.pretraining.handle(event.event);
        break;
      case 'source':
        this.pretraining?.close();
        this.pretraining = undefined;
        this.print(`source: ${event.cached ? 'cached' : 'pretrained'} ${event.path}`);
        break;
      case 'trial-start':
        this.running.set(event.worker, event.trial.spec.name.replace(/^.*\[/, '[') + ` seed ${event.trial.seed}`);
        if (!this.interactive) {
          this.print(`started   ${event.trial.spec.name.replace(/^.*\[/, '[')} seed ${event.trial.seed} on ${event.worker}` +
            (event.attempt > 1 ? ` (attempt ${event.attempt})` : ''));
        }
        this.redraw();
        break;
      case 'trial-eval':
        this.redraw();
        break;
      case 'warning':
        this.print(`warning: ${event.message}`);
        break;
      case 'repeat':
        this.done += event.seeds; // planned, and settled without running
        this.print(`repeat    [${configLabel(event.labels)}] finished before `
          + `as study trial ${event.repeatOf}: trial ${event.number} told its value, not run again`);
        break;
      case 'trial-retry':
        this.print(`retry: ${event.trial.spec.name} seed ${event.trial.seed} on ${event.worker} after: ${event.error.split('\n')[0]}`);
        break;
      case 'trial-end': {
        const r = event.record;
        this.running.delete(r.worker);
        this.done += 1;
        if (r.status === 'failed') this.failed += 1;
        if (r.status === 'pruned') this.pruned += 1;
        if (r.status === 'completed') this.durations.push(r.wallSeconds);
        const metric = r.status === 'failed' ? r.error?.split('\n')[0] : `best val ${(100 * r.metrics.bestValAccuracy).toFixed(1)}%`;
        const where = r.node && r.worker.startsWith('ray-') ? `${r.worker} [${r.node}]` : r.worker;
        this.print(`${r.status.padEnd(9)} ${r.spec.name.replace(/^.*\[/, '[')} seed ${r.seed} on ${where} in ${secs(r.wallSeconds)}: ${metric}` +
          (this.interactive ? '' : `  (${this.status()})`));
        this.redraw();
        break;
      }
    }
  }

  close(): void {
    this.pretraining?.close();
    if (this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}

/**
 * Progress for a person: on a terminal one redrawn bar per stage with loss, accuracy and images/s;
 * without one (CI, pipes) one plain line per evaluation.
 */
import type { RunEvent, Stability } from '../run/events.js';
import { pct, secs } from '../table.js';

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** @default stream.isTTY */
  interactive?: boolean;
  /** Printed before each line, e.g. the experiment's name in a multi-run job. */
  prefix?: string;
}

const BAR = 24;

/** The worker's phases, in words. */
const ACTIVITY: Record<string, string> = {
  source_load: 'loading the source', data_decode: 'decoding the images', bn_recalibration: 'recalibrating the source\'s batch norms',
  delta_probe: 'DELTA\'s channel probe', stability_estimate: 'the stability estimate', feature_cache: 'caching the source\'s maps',
};

const sci = (v: number) => (Number.isFinite(v) ? v.toPrecision(2) : String(v));

/** Where alpha sits against the stability limit; a warning above it, where a blow-up is expected. */
export function stabilityLine(stage: string, s: Stability): string {
  if (!Number.isFinite(s.alphaMax)) {
    return `${stage}: lambda_max ${sci(s.lambdaMax)} (${s.seconds.toFixed(1)}s); no stability limit for this optimiser`;
  }
  const ratio = s.alphaRatio >= 10 ? String(Math.round(s.alphaRatio)) : s.alphaRatio.toPrecision(2);
  const where = `alpha ${sci(s.alpha)} = ${ratio}x the stability limit ${sci(s.alphaMax)} (lambda_max ${sci(s.lambdaMax)}, ${s.seconds.toFixed(1)}s)`;
  return s.alphaRatio > 1 ? `warning: ${stage}: ${where}: above 1x, expect alpha x Omega to blow up` : `${stage}: ${where}`;
}

export class Progress {
  private readonly stream: NodeJS.WriteStream;
  private readonly interactive: boolean;
  private readonly prefix: string;
  private lastStep = { loss: NaN, acc: NaN, ips: NaN, step: 0 };
  private lastVal = NaN;
  private stageStarted = 0;
  /** A heartbeat line held back one event, dropped if an evaluation of the same step follows. */
  private pending: { step: number; line: string } | undefined;
  private drawn = false;
  /** The last progress line printed without a terminal (phase and quarter), so each quarter prints once. */
  private lastProgress: string | undefined;
  private noValidation = false;

  constructor(options: ProgressOptions = {}) {
    this.stream = options.stream ?? process.stderr;
    this.interactive = options.interactive ?? Boolean(this.stream.isTTY);
    this.prefix = options.prefix ? `${options.prefix} ` : '';
  }

  private print(line: string): void {
    if (this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
    this.stream.write(`${this.prefix}${line}\n`);
  }

  private draw(stage: string, step: number, total: number): void {
    const filled = Math.round((BAR * step) / Math.max(1, total));
    const bar = '█'.repeat(filled) + '░'.repeat(BAR - filled);
    const s = this.lastStep;
    const parts = [
      `${this.prefix}${stage.padEnd(12)} ${bar} ${String(step).padStart(String(total).length)}/${total}`,
      Number.isFinite(s.loss) ? `loss ${s.loss.toFixed(3)}` : '',
      Number.isFinite(s.acc) ? `train ${pct(s.acc)}` : '',
      Number.isFinite(this.lastVal) ? `val ${pct(this.lastVal)}` : '',
      Number.isFinite(s.ips) ? `${Math.round(s.ips)} img/s` : '',
    ];
    this.stream.write(`\r\x1b[2K${parts.filter(Boolean).join('  ')}`);
    this.drawn = true;
  }

  handle(event: RunEvent): void {
    switch (event.type) {
      case 'source':
        this.print(event.cached ? `source: cached pretrained model ${event.path}` : `source: pretrained and cached at ${event.path}`);
        break;
      case 'session':
        this.print(event.phase === 'transfer'
          ? `target: ${event.trainSize} labelled / ${event.valSize} val / ${event.testSize} test images on ${event.device} ` +
            `(${event.precision}); aligned layers ${event.layers.map((l) => `${l.name} [${l.shape.join('x')}]`).join(', ') || '-'}`
          : `pretraining the source on ${event.trainSize} images on ${event.device} (${event.precision})`);
        this.noValidation = event.valSize === 0;
        if (event.badFilesSkipped) this.print(`data: ${event.badFilesSkipped} images did not decode and were skipped`);
        break;
      case 'stage-start':
        this.onStageStart(event);
        break;
      case 'step':
        this.onStep(event);
        break;
      case 'eval':
        this.onEval(event);
        break;
      case 'stage-end': {
        this.flushPending();
        const r = event.result;
        const elapsed = (performance.now() - this.stageStarted) / 1000;
        this.print(`${r.name}: ${r.status}, ${r.stepsCompleted} steps in ${secs(elapsed)}` +
          (r.history.evals.length ? `, best val ${pct(r.bestValAccuracy)} at step ${r.bestStep}` :
            this.noValidation ? ': no validation split, so no selection: the model of its last step is kept' : ''));
        break;
      }
      case 'promote':
        this.print(`promoted the target to source (${event.tensorsCopied} tensors)`);
        break;
      case 'test':
        this.print(`test: ${pct(event.accuracy)} on ${event.count} images`);
        break;
      case 'progress':
        this.onProgress(event);
        break;
      case 'checkpoint':
        break;
    }
  }

  /** A phase before training: a bar on a terminal; otherwise a line as it starts (when it is slow), at each quarter and at its end. */
  private onProgress(raw: Extract<RunEvent, { type: 'progress' }>): void {
    // Bytes read as MiB (a source's weights), one decimal.
    const mib = (v: number) => Math.round((10 * v) / 2 ** 20) / 10;
    const event = raw.unit === 'bytes' ? { ...raw, unit: 'MiB', done: mib(raw.done), total: mib(raw.total), rate: mib(raw.rate) } : raw;
    const what = ACTIVITY[event.activity] ?? event.activity.replace(/_/g, ' ');
    const where = event.stage ? `${event.stage}: ` : '';
    const count = event.total ? `${event.done}/${event.total}` : `${event.done}`;
    const rate = event.rate && event.unit ? `, ${event.rate >= 100 ? Math.round(event.rate) : event.rate.toPrecision(2)} ${event.unit}/s` : '';
    if (event.finished) {
      this.lastProgress = undefined;
      this.print(`${where}${what}: ${count} ${event.unit} in ${secs(event.seconds)}${rate}${event.detail ? ` (${event.detail})` : ''}`);
      return;
    }
    if (this.interactive) {
      const filled = event.total ? Math.round((BAR * event.done) / event.total) : 0;
      this.stream.write(`\r\x1b[2K${this.prefix}${where}${what} ${'█'.repeat(filled)}${'░'.repeat(BAR - filled)} ${count} ${event.unit}${rate}`);
      this.drawn = true;
      return;
    }
    const quarter = event.total ? Math.floor((4 * event.done) / event.total) : 0;
    if (this.lastProgress !== `${event.activity}:${quarter}` && event.seconds >= 2) {
      this.lastProgress = `${event.activity}:${quarter}`;
      this.print(`${where}${what}: ${count} ${event.unit}${rate}`);
    }
  }

  private onStageStart(event: Extract<RunEvent, { type: 'stage-start' }>): void {
    this.lastStep = { loss: NaN, acc: NaN, ips: NaN, step: 0 };
    this.lastVal = NaN;
    this.stageStarted = performance.now();
    this.pending = undefined;
    if (!this.interactive) this.print(`${event.stage}: ${event.iterations} steps, regulariser ${event.regularizer}`);
    if (event.stability) this.print(stabilityLine(event.stage, event.stability));
    if (this.interactive) this.draw(event.stage, 0, event.iterations);
  }

  private onStep(event: Extract<RunEvent, { type: 'step' }>): void {
    this.lastStep = { loss: event.totalLoss, acc: event.trainAccuracy, ips: event.imagesPerSecond, step: event.step };
    if (this.interactive) return this.draw(event.stage, event.step, event.iterations);
    this.flushPending();
    // A heartbeat every 10 % for stages without evaluations there (e.g. pretraining without a val split).
    const tenth = Math.max(1, Math.round(event.iterations / 10));
    if (event.step % tenth === 0) {
      this.pending = { step: event.step, line: `${event.stage} step ${event.step}/${event.iterations}  train loss ${event.totalLoss.toFixed(3)}` +
        `  train ${pct(event.trainAccuracy)}  ${Math.round(event.imagesPerSecond)} img/s` };
    }
  }

  private onEval(event: Extract<RunEvent, { type: 'eval' }>): void {
    this.lastVal = event.accuracy;
    if (this.pending?.step === event.step) this.pending = undefined;
    if (this.interactive) return this.draw(event.stage, event.step, event.iterations);
    const s = this.lastStep;
    this.print(`${event.stage} step ${event.step}/${event.iterations}  val ${pct(event.accuracy)} (loss ${event.loss.toFixed(3)})` +
      `${Number.isFinite(s.loss) ? `  train loss ${s.loss.toFixed(3)}` : ''}` +
      `${Number.isFinite(s.ips) ? `  ${Math.round(s.ips)} img/s` : ''}${event.isBest ? '  *best' : ''}`);
  }

  private flushPending(): void {
    if (this.pending) this.print(this.pending.line);
    this.pending = undefined;
  }

  /** Ends a half-drawn bar line (on interrupt). */
  close(): void {
    if (this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}

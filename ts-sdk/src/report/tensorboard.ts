/**
 * TensorBoard event files from a run's events: train/val loss and accuracy, the regulariser's term,
 * attention entropy per layer, lr, images/s, test accuracy, and the attention heat maps as images;
 * one run directory per experiment (or sweep trial). The files are written by the `tensorboard`
 * package's own writer (through torch's SummaryWriter) in a small Python process (through the one
 * door to Python) that the SDK feeds `tensorboard` lines of the process channel, so they are the
 * format TensorBoard reads, not a copy of it. A writer that fails never costs a run its result:
 * `close()` says what went wrong, the CLI prints it as a warning.
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { TensorBoardLine } from '../gen/afa/v1/process.js';
import { imageRgb, overlayRgb } from './heatmap.js';
import { PythonProcess } from '../worker/python-process.js';
import type { AttentionSnapshot } from '../run/attention.js';
import type { RunEvent } from '../run/events.js';

export interface TensorBoardOptions {
  /** Python with the `tensorboard` package. @default as for Worker.start */
  python?: string;
}

type Line = Pick<TensorBoardLine, 'run' | 'step'> & Partial<Pick<TensorBoardLine, 'scalars' | 'image'>>;

/** The attention of one layer on every snapshot image, side by side, as one RGB image. */
export function snapshotStrip(snapshot: AttentionSnapshot, layerIndex: number): { width: number; height: number; rgb: Uint8Array } {
  const { width, height, channels, images } = snapshot;
  const layer = snapshot.layers[layerIndex]!;
  const stripWidth = width * images.length;
  const rgb = new Uint8Array(stripWidth * height * 3);
  images.forEach((image, i) => {
    const tile = overlayRgb(imageRgb(image, width, height, channels), layer.spatial[i]!);
    for (let y = 0; y < height; y++) rgb.set(tile.subarray(y * width * 3, (y + 1) * width * 3), (y * stripWidth + i * width) * 3);
  });
  return { width: stripWidth, height, rgb };
}

/** Follows one run's events; stages continue one global step axis, as in the sweep's curves. */
export class TensorBoardRun {
  private offset = 0;
  private iterations = 0;
  private lastStep = 0;

  constructor(private readonly send: (line: Line) => void, readonly name: string) {}

  private scalars(step: number, scalars: Record<string, number>): void {
    this.send({ run: this.name, step, scalars });
  }

  handle(event: RunEvent): void {
    if (event.phase !== 'transfer') return;
    switch (event.type) {
      case 'stage-start':
        this.offset += this.iterations;
        this.iterations = event.iterations;
        break;
      case 'step': {
        const step = (this.lastStep = this.offset + event.step);
        const scalars: Record<string, number> = {
          'loss/train_total': event.totalLoss, 'loss/train_ce': event.ceLoss, 'accuracy/train': event.trainAccuracy,
          lr: event.lr, 'throughput/images_per_second': event.imagesPerSecond,
        };
        if (event.regLoss) scalars['regularizer/alpha_x_omega'] = event.regLoss;
        for (const a of event.attention) scalars[`attention_entropy/${a.layer}`] = a.entropy;
        this.scalars(step, scalars);
        break;
      }
      case 'eval':
        this.lastStep = this.offset + event.step;
        this.scalars(this.lastStep, { [`loss/${event.split}`]: event.loss, [`accuracy/${event.split}`]: event.accuracy });
        break;
      case 'stage-end': {
        const snapshot = event.result.attentionSnapshot;
        snapshot?.layers.forEach((layer, i) => {
          if (layer.kind !== 'spatial') return;
          const strip = snapshotStrip(snapshot, i);
          this.send({ run: this.name, step: this.offset + event.result.stepsCompleted,
            image: { tag: `attention/${event.stage}/${layer.layer}`, height: strip.height, width: strip.width, rgb: Buffer.from(strip.rgb) } });
        });
        break;
      }
      case 'test':
        this.scalars(this.lastStep, { 'accuracy/test': event.accuracy, 'loss/test': event.loss });
        break;
    }
  }
}

/**
 * One writer process for a log directory; `run(name)` for each experiment or trial, `close()` at the
 * end. Open it with `TensorBoardWriter.open`, which waits until the process can write, so a Python
 * without the tensorboard package fails before any training, not after it.
 */
export class TensorBoardWriter {
  private constructor(private readonly process: PythonProcess, readonly logDir: string) {}

  /** Starts the writer and waits until it can write; throws (with its message) when it cannot. */
  static async open(logDir: string, options: TensorBoardOptions = {}): Promise<TensorBoardWriter> {
    const dir = resolve(logDir);
    mkdirSync(dir, { recursive: true });
    const process = await PythonProcess.start({ command: 'tensorboard', args: ['--logdir', dir], python: options.python,
      name: 'the TensorBoard writer', startTimeoutMs: 60_000 });
    return new TensorBoardWriter(process, dir);
  }

  run(name: string): TensorBoardRun {
    return new TensorBoardRun((line) => this.process.send({ input: { $case: 'tensorboard',
      value: { scalars: {}, image: undefined, ...line } } }), name);
  }

  /**
   * Flushes every run and waits for the files. Resolves with the writer's warnings (lines it
   * skipped, from its stderr), '' when there were none; a writer that died resolves with why.
   */
  async close(): Promise<string> {
    const exit = await this.process.stop(60_000);
    const log = this.process.stderrTail(10);
    if (exit.exitCode !== 0) return `the TensorBoard writer failed (exit ${exit.exitCode ?? exit.signal}): ${log || 'no message'}`;
    return log;
  }
}

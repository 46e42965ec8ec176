/**
 * TensorBoard event files from a run's events: train/val loss and accuracy, the regulariser's term,
 * attention entropy per layer, lr, images/s, test accuracy, and the attention heat maps as images;
 * one run directory per experiment (or sweep trial). The files are written by the `tensorboard`
 * package's own writer (through torch's SummaryWriter) in a small Python process the SDK feeds JSON
 * lines, so they are the format TensorBoard reads, not a copy of it.
 */
import { execa, type ResultPromise } from 'execa';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { AfaError } from '../errors.js';
import { pythonWorkerDir, workerPythonPath } from '../paths.js';
import { imageRgb, overlayRgb } from './heatmap.js';
import { resolvePython } from '../worker/python.js';
import type { AttentionSnapshot } from '../run/attention.js';
import type { RunEvent } from '../run/events.js';

export interface TensorBoardOptions {
  /** Python with the `tensorboard` package. @default as for Worker.start */
  python?: string;
}

type Line = { run: string; step: number; scalars?: Record<string, number>; image?: { tag: string; height: number; width: number; rgb: string } };

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
            image: { tag: `attention/${event.stage}/${layer.layer}`, height: strip.height, width: strip.width,
              rgb: Buffer.from(strip.rgb).toString('base64') } });
        });
        break;
      }
      case 'test':
        this.scalars(this.lastStep, { 'accuracy/test': event.accuracy, 'loss/test': event.loss });
        break;
    }
  }
}

const READY = 'AFA_TENSORBOARD_READY';

/**
 * One writer process for a log directory; `run(name)` for each experiment or trial, `close()` at the
 * end. Open it with `TensorBoardWriter.open`, which waits until the process can write, so a Python
 * without the tensorboard package fails before any training, not after it.
 */
export class TensorBoardWriter {
  private readonly child: ResultPromise;
  private stderr = '';
  private readonly ready: Promise<void>;

  /** Starts the writer and waits until it can write; throws (with its message) when it cannot. */
  static async open(logDir: string, options: TensorBoardOptions = {}): Promise<TensorBoardWriter> {
    const writer = new TensorBoardWriter(logDir, options);
    await writer.ready;
    return writer;
  }

  private constructor(readonly logDir: string, options: TensorBoardOptions = {}) {
    const dir = resolve(logDir);
    mkdirSync(dir, { recursive: true });
    const workerDir = pythonWorkerDir();
    this.child = execa(resolvePython(options.python), ['-m', 'afa_worker', 'tensorboard', '--logdir', dir], {
      cwd: workerDir,
      env: { PYTHONPATH: workerPythonPath() },
      stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', buffer: false, reject: false, cleanup: true,
    });
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (chunk: string) => (this.stderr = (this.stderr + chunk).slice(-4000)));
    this.child.stdin?.on('error', () => undefined); // a dead writer is reported by close()
    this.ready = new Promise<void>((resolve, reject) => {
      let out = '';
      this.child.stdout?.setEncoding('utf8');
      this.child.stdout?.on('data', (chunk: string) => {
        out += chunk;
        if (out.includes(READY)) resolve();
      });
      void this.child.then((result) => reject(new AfaError(
        `the TensorBoard writer (${result.command.split(' ')[0]}) could not start (exit ${result.exitCode ?? result.signal}): ` +
        `${this.stderr.trim() || 'no message'}`)));
    });
    this.ready.catch(() => undefined);
  }

  run(name: string): TensorBoardRun {
    return new TensorBoardRun((line) => this.child.stdin?.write(`${JSON.stringify(line)}\n`), name);
  }

  /** Flushes every run and waits for the files; throws when the writer failed. */
  async close(): Promise<void> {
    this.child.stdin?.end();
    const result = await this.child;
    if (result.exitCode !== 0) {
      throw new AfaError(`the TensorBoard writer failed (exit ${result.exitCode ?? result.signal}): ${this.stderr.trim() || 'no message'}`);
    }
  }
}

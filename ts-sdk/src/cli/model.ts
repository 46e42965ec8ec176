/**
 * `afa export` and `afa predict`: a trained model out of the worker, and used. `predict` runs an
 * exported `.onnx` model in this process (onnxruntime-node; no Python), or a checkpoint on a worker.
 */
import type { Command } from 'commander';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { Fields } from '../fields.js';
import { loadModel } from '../model/model.js';
import type { Prediction } from '../model/predictions.js';
import { formatTable } from '../table.js';
import { checkpointOf, exportOnnx } from '../worker/export.js';
import { Worker } from '../worker/worker.js';
import { EXIT, reportFailure } from './exit.js';
import { abortOnSigint } from './interrupt.js';

const IMAGE_SUFFIXES = ['.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp', '.tif', '.tiff'];
/** Images one `afa predict` reads (folders are walked), and how deep. */
const MAX_FILES = 100_000;
const MAX_DEPTH = 16;

/** The image files the arguments name: files as given, folders walked for image suffixes, sorted. */
export function imageFiles(paths: readonly string[]): string[] {
  const files: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > MAX_DEPTH) throw new UsageError(dir, `is more than ${MAX_DEPTH} folders deep`);
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const info = statSync(path);
      if (info.isDirectory()) walk(path, depth + 1);
      else if (info.isFile() && IMAGE_SUFFIXES.includes(extname(name).toLowerCase())) files.push(path);
      if (files.length > MAX_FILES) throw new UsageError(paths[0]!, `holds more than ${MAX_FILES} images; predict them in parts`);
    }
  };
  for (const p of paths) {
    let info;
    try {
      info = statSync(p);
    } catch {
      throw new UsageError(p, 'does not exist');
    }
    if (info.isDirectory()) walk(p, 0);
    else files.push(p);
  }
  if (!files.length) throw new UsageError(paths.join(' '), `holds no images (${IMAGE_SUFFIXES.join(', ')})`);
  return files;
}

/** Predictions of every file, in batches, with the file named when one is refused. */
async function predictFiles(files: string[], predict: (images: Uint8Array[]) => Promise<Prediction[]>): Promise<Prediction[]> {
  const out: Prediction[] = [];
  for (let start = 0; start < files.length; start += 256) {
    const batch = files.slice(start, start + 256);
    try {
      out.push(...(await predict(batch.map((f) => readFileSync(f)))));
    } catch (error) {
      const index = /images\[(\d+)\]/.exec((error as { field?: string }).field ?? '');
      if (index) throw new UsageError(batch[Number(index[1])]!, (error as { problem?: string }).problem ?? (error as Error).message);
      throw error;
    }
  }
  return out;
}

function printPredictions(files: string[], predictions: Prediction[], json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(files.map((file, i) => ({ file, top: predictions[i]!.top })), null, 2)}\n`);
    return;
  }
  for (const [i, file] of files.entries()) {
    process.stdout.write(`${file}\n${formatTable(['class', 'label', 'probability'],
      predictions[i]!.top.map((t) => [t.name, String(t.label), `${(100 * t.probability).toFixed(1)}%`]))}\n\n`);
  }
}

interface PredictFlags { top: string; json?: boolean; worker?: string; python?: string }

async function predictCommand(model: string, paths: string[], opts: PredictFlags): Promise<number> {
  const interrupt = abortOnSigint('stopping');
  let worker: Worker | undefined;
  try {
    const topK = Fields.usage('--top').count(opts.top, { max: 1000 });
    const files = imageFiles(paths);
    let predictions: Prediction[];
    if (extname(model).toLowerCase() === '.onnx') {
      const onnx = await loadModel(resolve(model));
      predictions = await predictFiles(files, (images) => onnx.predict(images, { topK }));
      await onnx.close();
    } else {
      const checkpoint = checkpointOf(model);
      worker = opts.worker ? await Worker.connect(opts.worker) : await Worker.start({ python: opts.python, signal: interrupt.signal });
      const session = await worker.loadModel(checkpoint, { signal: interrupt.signal });
      predictions = await predictFiles(files, (images) => session.predict(images, { topK, signal: interrupt.signal }));
    }
    printPredictions(files, predictions, Boolean(opts.json));
    return EXIT.OK;
  } catch (error) {
    return reportFailure('predict', error, interrupt.signal.aborted);
  } finally {
    interrupt.dispose();
    await worker?.stop();
  }
}

interface ExportFlags { onnx: string; checkImages?: string[]; worker?: string; python?: string; opset?: string }

async function exportCommand(model: string, opts: ExportFlags): Promise<number> {
  const interrupt = abortOnSigint('stopping the export');
  let worker: Worker | undefined;
  try {
    const opset = opts.opset === undefined ? undefined : Fields.usage('--opset').number(opts.opset, { integer: true, min: 17, max: 23 });
    const checkImages = opts.checkImages?.length ? imageFiles(opts.checkImages).map((f) => readFileSync(f)) : undefined;
    worker = opts.worker ? await Worker.connect(opts.worker) : await Worker.start({ python: opts.python, signal: interrupt.signal });
    const r = await exportOnnx(model, opts.onnx, { worker, checkImages, opset, signal: interrupt.signal });
    process.stdout.write(`exported ${r.path} (${r.bytes} bytes, opset ${r.opset}); its logits are within ${r.maxAbsDifference.toExponential(1)} ` +
      `of PyTorch's on ${r.checkedImages} ${r.checkedOn.replace(/^the /, '')}\nmodel card: ${r.cardPath} (${r.card.classNames.length} classes: ` +
      `${r.card.classNames.slice(0, 10).join(', ')}${r.card.classNames.length > 10 ? ', ...' : ''})\n`);
    return EXIT.OK;
  } catch (error) {
    return reportFailure('export', error, interrupt.signal.aborted);
  } finally {
    interrupt.dispose();
    await worker?.stop();
  }
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function registerModel(program: Command): void {
  program
    .command('export <model>')
    .description('export a checkpoint (or a run directory\'s) to ONNX, checked against PyTorch, its model card beside it')
    .requiredOption('--onnx <file>', 'the .onnx file to write (the model card goes to <file>.json)')
    .option('--check-images <path>', 'images (or folders) to check the export on (repeatable; default: random images of the input size)', collect)
    .option('--opset <n>', 'ONNX opset, 17-23 (default 18)')
    .option('--worker <address>', 'export on a running worker instead of starting one')
    .option('--python <path>', 'Python interpreter for a started worker')
    .action(async (model: string, opts: ExportFlags) => {
      process.exitCode = await exportCommand(model, opts);
    });
  program
    .command('predict <model> <images...>')
    .description('classify images (files or folders) with an exported model (.onnx, in Node) or a checkpoint (on a worker)')
    .option('--top <k>', 'classes listed per image', '3')
    .option('--json', 'print the predictions as JSON')
    .option('--worker <address>', 'for a checkpoint: a running worker instead of starting one')
    .option('--python <path>', 'for a checkpoint: Python interpreter for a started worker')
    .action(async (model: string, images: string[], opts: PredictFlags) => {
      process.exitCode = await predictCommand(model, images, opts);
    });
}

/**
 * `exportOnnx(checkpoint, 'model.onnx')`: a trained model out as ONNX for a Node service, from a
 * checkpoint or a run directory (the folder of its result.json), on a worker of your own or one
 * started for the export. The export is checked against PyTorch before it is kept.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { isRunDirectory, readRunRecord } from '../run/result-file.js';
import type { ExportOnnxOptions, OnnxExport } from '../run/model-out.js';
import { Worker } from './worker.js';

/** The checkpoint a path names: a `.safetensors` file, or a run directory's checkpoint. */
export function checkpointOf(path: string): string {
  const full = resolve(path);
  if (existsSync(full) && statSync(full).isDirectory()) {
    if (!isRunDirectory(full)) throw new UsageError(path, 'is a directory without a result.json: give a checkpoint (.safetensors) or a run directory');
    const checkpoint = readRunRecord(full).result.checkpointPath;
    if (!checkpoint) throw new UsageError(path, 'is a run directory whose run kept no checkpoint (it ran with checkpoint: false)');
    return checkpoint;
  }
  if (!existsSync(full)) throw new UsageError(path, 'does not exist');
  return full;
}

export interface ExportOptions extends ExportOnnxOptions {
  /** A worker to export on. @default one started for the export (and stopped after it) */
  worker?: Worker;
}

/** Exports a checkpoint (or a run directory's) to ONNX at `out`, its model card beside it as `<name>.json`. */
export async function exportOnnx(checkpoint: string, out: string, options: ExportOptions = {}): Promise<OnnxExport> {
  const path = checkpointOf(checkpoint);
  const worker = options.worker ?? (await Worker.start({ signal: options.signal }));
  try {
    const model = await worker.loadModel(path, { signal: options.signal });
    try {
      return await model.exportOnnx(resolve(out), options);
    } finally {
      await model.close().catch(() => undefined);
    }
  } finally {
    if (!options.worker) await worker.stop();
  }
}

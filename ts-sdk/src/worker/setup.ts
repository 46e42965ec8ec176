/**
 * Creates the worker's Python environment for a package installed outside the repository:
 * a venv under the user's cache with the bundled `python-worker/` installed into it.
 */
import { execa } from 'execa';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { afaHome, pythonWorkerDir, userVenvPython } from '../paths.js';
import { AfaError } from '../errors.js';

export interface WorkerSetupOptions {
  /** Interpreter that creates the venv. @default "python3" */
  basePython?: string;
  /** Receives pip's progress lines. @default dropped */
  onOutput?: (line: string) => void;
}

/** Returns the venv's python; idempotent (pip skips what is installed). */
export async function setupWorkerEnvironment(options: WorkerSetupOptions = {}): Promise<string> {
  const python = userVenvPython();
  const venv = dirname(dirname(python));
  mkdirSync(afaHome(), { recursive: true });
  const run = async (file: string, args: string[]) => {
    const child = execa(file, args, { all: true, reject: false });
    child.all?.setEncoding('utf8');
    child.all?.on('data', (chunk: string) => chunk.split('\n').filter(Boolean).forEach((l) => options.onOutput?.(l)));
    const result = await child;
    if (result.exitCode !== 0) {
      throw new AfaError(`${file} ${args.join(' ')} failed (exit ${result.exitCode}):\n${String(result.all ?? '').slice(-4000)}`);
    }
  };
  if (!existsSync(python)) await run(options.basePython ?? 'python3', ['-m', 'venv', venv]);
  await run(python, ['-m', 'pip', 'install', pythonWorkerDir()]);
  return python;
}

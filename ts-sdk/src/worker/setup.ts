/**
 * Creates the worker's Python environment for a package installed outside the repository: a venv
 * under the user's cache with the bundled `python-worker/` installed into it, stamped with the
 * version that installed it so a later version reinstalls instead of running a stale worker.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afaHome, pythonWorkerDir, userVenvPython } from '../paths.js';
import { AfaError, UsageError } from '../errors.js';
import { currentStamp, readStamp, TORCH_BUILDS, venvOf, writeStamp, type TorchBuild } from './environment.js';
import { runCommand } from './python-process.js';

/** PyTorch's own index of CPU-only wheels: a laptop gets torch without gigabytes of CUDA libraries. */
export const TORCH_CPU_INDEX = 'https://download.pytorch.org/whl/cpu';

export interface WorkerSetupOptions {
  /** Interpreter that creates the venv. @default "python3" */
  basePython?: string;
  /**
   * Which torch: `cpu` from PyTorch's CPU index, `cuda` a CUDA build (what pip picks on Linux),
   * `default` whatever pip picks. @default the venv's current choice, else `default`
   */
  torch?: TorchBuild;
  /** Index to take torch from instead of the one `torch` implies (a mirror, a CUDA-version index). */
  torchIndexUrl?: string;
  /** Reinstall even when the venv was set up by this version. @default false */
  force?: boolean;
  /** Install Ray too (the worker's `ray` extra), for `afa sweep --ray`; once installed it stays. @default false */
  ray?: boolean;
  /** Receives pip's progress lines. @default dropped */
  onOutput?: (line: string) => void;
}

export interface WorkerSetupResult {
  /** The venv's interpreter, for `AFA_PYTHON` or the `python` option. */
  python: string;
  /** False when the venv was already set up by this version and nothing ran. */
  installed: boolean;
  afaWorker: string;
  torch: string;
  /** CUDA version torch was built with, or null for a CPU-only build. */
  cuda: string | null;
}

type Run = (file: string, args: string[]) => Promise<string>;

function runner(onOutput?: (line: string) => void): Run {
  return (file, args) => runCommand(file, args, onOutput);
}

function checkTorchChoice(torch: TorchBuild): void {
  if (torch !== 'default' && !(TORCH_BUILDS as readonly string[]).includes(torch)) {
    throw new UsageError('--torch', `unknown value "${torch}"`, [...TORCH_BUILDS]);
  }
  if (torch === 'cuda' && process.platform === 'darwin') {
    throw new UsageError('--torch', 'PyTorch publishes no CUDA builds for macOS (use cpu, or leave it out for MPS)', ['cpu']);
  }
}

async function installTorch(run: Run, python: string, torch: TorchBuild, indexUrl: string | undefined, switching: boolean): Promise<void> {
  const index = indexUrl ?? (torch === 'cpu' ? TORCH_CPU_INDEX : undefined);
  if (torch === 'default' && !index) return; // the worker's requirements bring torch
  if (switching) await run(python, ['-m', 'pip', 'uninstall', '--yes', 'torch']);
  await run(python, ['-m', 'pip', 'install', 'torch', ...(index ? ['--index-url', index] : [])]);
}

/** Installs from a copy: pip builds in the source folder, and node_modules may be read-only or shared. */
async function installWorker(run: Run, python: string, ray: boolean): Promise<void> {
  const build = mkdtempSync(join(afaHome(), 'worker-src-'));
  try {
    cpSync(join(pythonWorkerDir(), 'pyproject.toml'), join(build, 'pyproject.toml'));
    cpSync(join(pythonWorkerDir(), 'afa_worker'), join(build, 'afa_worker'), {
      recursive: true,
      filter: (src) => !src.includes('__pycache__'),
    });
    // The [tensorboard] extra: `--tensorboard` writes event files with the tensorboard package;
    // [onnx]: `afa export --onnx` (torch.onnx's exporter and the onnxruntime check, ~40 MB);
    // [search]: Optuna's samplers, pruners and storages for `afa sweep --search tpe|gp --early-stop asha`;
    // [ray]: the Ray pool driver and actors of `afa sweep --ray`.
    await run(python, ['-m', 'pip', 'install', `${build}[${['tensorboard', 'onnx', 'search', ...(ray ? ['ray'] : [])].join(',')}]`]);
  } finally {
    rmSync(build, { recursive: true, force: true });
  }
}

async function describe(run: Run, python: string): Promise<Pick<WorkerSetupResult, 'afaWorker' | 'torch' | 'cuda'>> {
  const out = await run(python, ['-c',
    'import json, torch, afa_worker; print(json.dumps({"afaWorker": afa_worker.__version__, "torch": torch.__version__, "cuda": torch.version.cuda}))']);
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as Pick<WorkerSetupResult, 'afaWorker' | 'torch' | 'cuda'>;
}

/** Sets the venv up, or does nothing when this version already did (unless `force`). */
export async function setupWorkerEnvironment(options: WorkerSetupOptions = {}): Promise<WorkerSetupResult> {
  const python = userVenvPython();
  const venv = venvOf(python);
  const run = runner(options.onOutput);
  mkdirSync(afaHome(), { recursive: true });
  if (!existsSync(python)) await run(options.basePython ?? 'python3', ['-m', 'venv', venv]);

  const before = readStamp(venv);
  const torch = options.torch ?? before?.torch ?? 'default';
  checkTorchChoice(torch);
  const ray = options.ray ?? before?.ray ?? false;
  const wanted = { ...currentStamp(torch), ...(ray ? { ray } : {}) };
  const upToDate = before !== undefined && !options.torchIndexUrl &&
    before.version === wanted.version && before.requirements === wanted.requirements && before.torch === wanted.torch &&
    Boolean(before.ray) === ray;
  if (upToDate && !options.force) return { python, installed: false, ...(await describe(run, python)) };

  // torch is the big download: only when the venv is new, the build changes, or it is asked for.
  const torchChanges = before === undefined || before.torch !== torch;
  if (torchChanges || options.torchIndexUrl || options.force) {
    await installTorch(run, python, torch, options.torchIndexUrl, before !== undefined && before.torch !== torch);
  }
  await installWorker(run, python, ray);
  const installed = await describe(run, python);
  if (torch === 'cuda' && !installed.cuda) {
    throw new AfaError(`torch ${installed.torch} in ${venv} is a CPU-only build; pass --torch-index with a CUDA index ` +
      '(e.g. https://download.pytorch.org/whl/cu128) to `afa worker setup --torch cuda`');
  }
  writeStamp(venv, wanted);
  return { python, installed: true, ...installed };
}

/**
 * What a worker venv was set up for: the package version and worker requirements that installed it,
 * and which torch. `afa worker setup` writes it; `Worker.start` refuses a venv set up by another
 * version, naming the command that fixes it.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { packageVersion, pythonWorkerDir } from '../paths.js';

export const TORCH_BUILDS = ['cpu', 'cuda'] as const;
/** Which torch build `afa worker setup` installs; `default` is what pip picks for the platform. */
export type TorchBuild = (typeof TORCH_BUILDS)[number] | 'default';

export interface EnvironmentStamp {
  /** afa-transfer version that set the venv up. */
  version: string;
  /** Hash of the worker's pyproject.toml: its requirements can change within a version in a checkout. */
  requirements: string;
  torch: TorchBuild;
  /** Whether Ray (the worker's `ray` extra, for `afa sweep --ray`) was installed. */
  ray?: boolean;
}

/** The command that (re)creates the worker's venv, as a user types it in a project. */
export const SETUP_COMMAND = 'npx afa worker setup';

const STAMP_FILE = 'afa-worker-setup.json';

/** The venv folder of a venv interpreter (`<venv>/bin/python`). */
export function venvOf(python: string): string {
  return dirname(dirname(python));
}

export function requirementsHash(): string {
  return createHash('sha256').update(readFileSync(join(pythonWorkerDir(), 'pyproject.toml'))).digest('hex').slice(0, 16);
}

export function currentStamp(torch: TorchBuild): EnvironmentStamp {
  return { version: packageVersion(), requirements: requirementsHash(), torch };
}

export function readStamp(venv: string): EnvironmentStamp | undefined {
  const file = join(venv, STAMP_FILE);
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as EnvironmentStamp;
  } catch {
    return undefined;
  }
}

export function writeStamp(venv: string, stamp: EnvironmentStamp): void {
  writeFileSync(join(venv, STAMP_FILE), `${JSON.stringify(stamp, null, 2)}\n`);
}

/** Why the venv does not match this package (undefined when it does). */
export function staleReason(venv: string): string | undefined {
  const stamp = readStamp(venv);
  if (!stamp) return `${venv} was not set up by \`afa worker setup\` of this package (no ${STAMP_FILE})`;
  if (stamp.version !== packageVersion()) return `${venv} was set up by afa-transfer ${stamp.version}, this is ${packageVersion()}`;
  if (stamp.requirements !== requirementsHash()) return `${venv} was set up for other worker requirements (python-worker/pyproject.toml changed)`;
  return undefined;
}

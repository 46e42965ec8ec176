/** Which Python interpreter runs the worker: an explicit option, then AFA_PYTHON, then a venv. */
import { existsSync } from 'node:fs';
import { repoVenvPython, userVenvPython } from '../paths.js';
import { WorkerStartError } from '../errors.js';

export function resolvePython(explicit?: string): string {
  if (explicit) return explicit;
  if (process.env.AFA_PYTHON) return process.env.AFA_PYTHON;
  for (const candidate of [repoVenvPython(), userVenvPython()]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new WorkerStartError(
    `no Python environment for the worker: looked at ${repoVenvPython()} and ${userVenvPython()}. ` +
      'Run `afa worker setup` (or `make setup` in a checkout), or set AFA_PYTHON / the `python` option.',
    '',
  );
}

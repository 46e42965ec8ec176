/** Which Python interpreter runs the worker: an explicit option, then AFA_PYTHON, then a venv. */
import { existsSync } from 'node:fs';
import { repoVenvPython, userVenvPython } from '../paths.js';
import { WorkerStartError } from '../errors.js';
import { SETUP_COMMAND, staleReason, venvOf } from './environment.js';

export function resolvePython(explicit?: string): string {
  if (explicit) return explicit;
  if (process.env.AFA_PYTHON) return process.env.AFA_PYTHON;
  if (existsSync(repoVenvPython())) return repoVenvPython();
  const python = userVenvPython();
  if (existsSync(python)) {
    // A venv set up by another version keeps that version's requirements: refuse it before it
    // fails in an import or, worse, trains with other dependencies.
    const stale = staleReason(venvOf(python));
    if (stale) throw new WorkerStartError(`the worker's Python environment is out of date: ${stale}. Run \`${SETUP_COMMAND}\``, '');
    return python;
  }
  throw new WorkerStartError(
    `no Python environment for the worker: looked at ${repoVenvPython()} and ${python}. ` +
      `Run \`${SETUP_COMMAND}\` (or \`make setup\` in a checkout), or set AFA_PYTHON / the \`python\` option.`,
    '',
  );
}

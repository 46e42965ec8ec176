/** Where the package's own files are, whether run from the repository (tsx) or from `dist/`. */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'afa-transfer';

function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if (JSON.parse(readFileSync(manifest, 'utf8')).name === PACKAGE_NAME) return dir;
      } catch {
        // keep looking upwards
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the ${PACKAGE_NAME} package root above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

let cachedRoot: string | undefined;

/** The package root (the folder with package.json, proto/ and python-worker/). */
export function packageRoot(): string {
  cachedRoot ??= findPackageRoot();
  return cachedRoot;
}

/** This package's version, from its package.json (the one place it is written for the SDK). */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

export function pythonWorkerDir(): string {
  return join(packageRoot(), 'python-worker');
}

/** PYTHONPATH for a process that imports the bundled worker: its sources first, so they win over any installed copy. */
export function workerPythonPath(existing = process.env.PYTHONPATH): string {
  return [pythonWorkerDir(), existing].filter(Boolean).join(':');
}

/** The venv `make setup` creates inside a repository checkout. */
export function repoVenvPython(): string {
  return join(pythonWorkerDir(), '.venv', 'bin', 'python');
}

/** Per-user home of the toolkit: the setup venv and the cache. @default ~/.cache/afa-transfer */
export function afaHome(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return resolve(process.env.AFA_HOME || join(base, 'afa-transfer'));
}

/** The venv `afa worker setup` creates for a package installed outside the repository. */
export function userVenvPython(): string {
  return join(afaHome(), 'venv', 'bin', 'python');
}

/** The cache of pretrained sources, run outputs, packed data sets. @default $AFA_CACHE, else <afaHome>/cache */
export function cacheDir(explicit?: string): string {
  return resolve(explicit ?? process.env.AFA_CACHE ?? join(afaHome(), 'cache'));
}

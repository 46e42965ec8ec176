/**
 * One driver per sweep directory: two `afa sweep` processes on one directory would interleave its
 * results. Each driver holds a lock file (`locks/<host>-<pid>-<random>.json`, created exclusively) for as
 * long as it runs; another driver is refused while a live one holds it, unless both share one
 * study through `--storage` (then each records its own trials, whole lines appended, and the study
 * hands each configuration to one of them). A lock left by a process of this machine that no longer
 * runs (SIGKILL) is stale and taken over; one from another machine is trusted, and the message says
 * which file to remove if that driver is gone.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { UsageError } from '../errors.js';

interface LockBody {
  pid: number;
  host: string;
  startedAt: string;
  /** The shared study's storage, when the driver runs with --storage. */
  storage?: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function read(path: string): LockBody | undefined {
  try {
    const body = JSON.parse(readFileSync(path, 'utf8')) as LockBody;
    return typeof body.pid === 'number' && typeof body.host === 'string' ? body : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the directory for this process; returns the release. `storage` is the shared study's, if any.
 * The lock is written first and the others read after, so two drivers starting at once cannot both
 * pass (both may be refused; neither writes).
 */
export function lockSweepDirectory(dir: string, storage?: string): () => void {
  const folder = join(dir, 'locks');
  mkdirSync(folder, { recursive: true });
  const host = hostname();
  // Unique per call: a second sweep in this very process is another driver too.
  const mine = join(folder, `${host.replace(/[^A-Za-z0-9_.-]/g, '_')}-${process.pid}-${randomBytes(4).toString('hex')}.json`);
  const body: LockBody = { pid: process.pid, host, startedAt: new Date().toISOString(), ...(storage ? { storage } : {}) };
  writeFileSync(mine, JSON.stringify(body), { flag: 'wx', mode: 0o644 });
  const release = () => rmSync(mine, { force: true });
  for (const name of readdirSync(folder)) {
    const path = join(folder, name);
    if (!name.endsWith('.json') || path === mine) continue;
    const other = read(path);
    if (!other || (other.host === host && !alive(other.pid))) {
      rmSync(path, { force: true }); // unreadable, or left by a driver of this machine that is gone
      continue;
    }
    if (storage && other.storage === storage) continue; // drivers of one shared study
    release();
    throw new UsageError('--out', `${dir} is in use by another afa sweep (pid ${other.pid} on ${other.host}, since ${other.startedAt}` +
      `${other.storage ? `, sharing the study in ${other.storage}` : ''}); wait for it, give this one another --out, or share its study ` +
      `with the same --storage${other.host === host ? '' : ` (if that driver is gone, remove ${path})`}`);
  }
  let released = false;
  return () => {
    if (!released) release();
    released = true;
  };
}

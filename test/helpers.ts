import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker, type WorkerStartOptions } from '../ts-sdk/src/index.js';

/** True while a process with this pid exists (and is not a zombie we already reaped). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitUntil(predicate: () => boolean, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (predicate()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return predicate();
}

/** A real worker with one torch thread (the tests run two at a time on two cores at most). */
export function startTestWorker(options: WorkerStartOptions = {}): Promise<Worker> {
  return Worker.start({ threads: 1, ...options });
}

export function tempDir(prefix = 'afa-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The `afa` CLI from source, as a user runs it (node + tsx, no build step). */
export const AFA_CLI = [process.execPath, ['--import', 'tsx', 'ts-sdk/src/cli/main.ts']] as const;

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker, type WorkerStartOptions } from '../ts-sdk/src/index.js';
import { PythonProcess } from '../ts-sdk/src/worker/python-process.js';

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

/**
 * `python -m afa_worker serve ARGS` through the SDK's one door to Python, as a user would start a
 * worker by hand (its own token, host, TLS): the process, where it serves, and a stop that waits
 * for its exit. A start that fails says why with the worker's stderr (WorkerStartError).
 */
export async function serveByHand(args: string[], env: Record<string, string> = {}, python?: string) {
  const process = await PythonProcess.start({ command: 'serve', args: ['--port', '0', '--exit-with-stdin', '--threads', '1', ...args],
    env, name: 'the worker', startTimeoutMs: 60_000, ...(python ? { python } : {}) });
  const ready = process.ready.detail?.$case === 'serve' ? process.ready.detail.value : undefined;
  if (!ready) throw new Error(`the worker's ready message says nothing of where it serves:\n${process.stderrTail()}`);
  return { process, port: ready.port, host: ready.host, stop: () => process.stop(10_000) };
}

/**
 * Spawning the worker process and reading its handshake. The child keeps a pipe on its stdin and
 * exits when it closes, so it never outlives this process, even when this process is SIGKILLed.
 */
import { execa, type ResultPromise } from 'execa';
import { createInterface } from 'node:readline';
import { packageVersion, pythonWorkerDir, workerPythonPath } from '../paths.js';
import { WorkerStartError } from '../errors.js';
import { SETUP_COMMAND } from './environment.js';

export const HANDSHAKE_PREFIX = 'AFA_WORKER_READY ';
/** Protocol major this SDK speaks; the worker prints its own in the handshake. */
export const PROTOCOL_VERSION = 1;

export interface Handshake {
  port: number;
  host: string;
  protocol: number;
  version: string;
  pid: number;
  tls: boolean;
  /** Present when the worker made its own token (it was started without one). */
  token?: string;
}

/** Keeps the last `limit` characters a stream wrote. */
export class TailBuffer {
  private text = '';
  constructor(private readonly limit = 8192) {}
  push(chunk: string): void {
    this.text = (this.text + chunk).slice(-this.limit);
  }
  /** The last `lines` lines. */
  tail(lines = 40): string {
    return this.text.split('\n').slice(-lines - 1).join('\n').trim();
  }
}

export interface SpawnOptions {
  python: string;
  threads?: number;
  env?: Record<string, string>;
  /** Called with each stderr chunk (the worker's log), besides the kept tail. */
  onStderr?: (chunk: string) => void;
  startTimeoutMs: number;
  signal?: AbortSignal;
  checkpointDir?: string;
  allowWrite?: readonly string[] | 'anywhere';
}

export interface SpawnedWorker {
  child: ResultPromise;
  handshake: Handshake;
  stderr: TailBuffer;
}

export async function spawnWorker(options: SpawnOptions): Promise<SpawnedWorker> {
  const args = ['-m', 'afa_worker', 'serve', '--port', '0', '--exit-with-stdin'];
  if (options.threads) args.push('--threads', String(options.threads));
  if (options.checkpointDir) args.push('--checkpoint-dir', options.checkpointDir);
  if (options.allowWrite === 'anywhere') args.push('--allow-write-anywhere');
  else for (const dir of options.allowWrite ?? []) args.push('--allow-write', dir);
  const workerDir = pythonWorkerDir();
  const stderr = new TailBuffer();
  let child: ResultPromise;
  try {
    child = execa(options.python, args, {
      cwd: workerDir,
      env: {
        ...options.env,
        // The bundled sources win over any installed copy, so the SDK and worker always match.
        PYTHONPATH: workerPythonPath(options.env?.PYTHONPATH ?? process.env.PYTHONPATH),
        PYTHONUNBUFFERED: '1',
      },
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      cleanup: true,
      forceKillAfterDelay: 3000,
    });
  } catch (error) {
    throw new WorkerStartError(`cannot spawn ${options.python}: ${(error as Error).message}`, '', null, { cause: error });
  }
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr.push(chunk);
    options.onStderr?.(chunk);
  });

  const handshake = await new Promise<Handshake>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    let settled = false;
    const fail = (message: string, exitCode: number | null = null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      lines.close();
      child.kill('SIGKILL');
      // Give stderr a moment to flush the traceback that explains the failure.
      setTimeout(() => reject(new WorkerStartError(message, stderr.tail(), exitCode)), 100);
    };
    const timer = setTimeout(
      () => fail(`the worker (${options.python}) printed no handshake within ${options.startTimeoutMs} ms`),
      options.startTimeoutMs,
    );
    options.signal?.addEventListener('abort', () => fail('worker start was aborted'), { once: true });
    lines.on('line', (line) => {
      if (settled || !line.startsWith(HANDSHAKE_PREFIX)) return;
      let parsed: Handshake;
      try {
        parsed = JSON.parse(line.slice(HANDSHAKE_PREFIX.length)) as Handshake;
      } catch {
        return fail(`unreadable handshake line: ${line}`);
      }
      if (parsed.protocol !== PROTOCOL_VERSION) {
        return fail(`the worker speaks protocol ${parsed.protocol}, this SDK speaks ${PROTOCOL_VERSION}; run \`${SETUP_COMMAND}\``);
      }
      if (parsed.version !== packageVersion()) {
        return fail(`the worker is afa-worker ${parsed.version}, this SDK is afa-transfer ${packageVersion()}; run \`${SETUP_COMMAND}\``);
      }
      settled = true;
      clearTimeout(timer);
      // Keep draining stdout so a chatty worker never blocks on a full pipe.
      lines.on('line', () => undefined);
      resolve(parsed);
    });
    child.then((result) => {
      const how = result.signal ? `signal ${result.signal}` : `exit code ${result.exitCode}`;
      const notFound = (result as { code?: string }).code === 'ENOENT' || /ENOENT/.test(String(result.message ?? ''));
      const missing = /ModuleNotFoundError: No module named '([^']+)'/.exec(stderr.tail());
      fail(
        notFound
          ? `cannot run the worker's Python interpreter ${options.python}: not found`
          : missing
            ? `the worker's Python (${options.python}) lacks the module ${missing[1]}: run \`${SETUP_COMMAND}\`, or install the worker's requirements into it`
            : `the worker (${options.python}) exited before its handshake (${how})`,
        result.exitCode ?? null,
      );
    });
  });
  return { child, handshake, stderr };
}

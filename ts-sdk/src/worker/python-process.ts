/**
 * The one door to Python. Every process of the worker package the SDK starts (the worker, the Ray
 * pool driver, the TensorBoard writer) goes through `PythonProcess.start`, which owns what they
 * share: the interpreter, the bundled sources on PYTHONPATH, the environment, the stdin lifeline
 * (the child exits when it closes, so it never outlives this process, even one SIGKILLed), the
 * stderr tail, and one typed line channel (proto/afa/v1/process.proto) whose first message,
 * `ready`, carries the child's version and protocol, checked here. A child that exits, reports an
 * error or stays silent before it is ready rejects with a `WorkerStartError` holding its stderr.
 * Callers say only what to run and what they expect back. (Temporal's worker owns its child
 * processes the same way: packages/worker/src/workflow/threaded-vm.ts.)
 *
 * One-shot commands that are not the worker package's (pip, venv) go through `runCommand` here
 * too, so this is the one module that spawns processes.
 */
import { execa, type ResultPromise } from 'execa';
import { createInterface } from 'node:readline';
import { AfaError, WorkerStartError } from '../errors.js';
import { ProcessInput, ProcessMessage, type Ready } from '../gen/afa/v1/process.js';
import { packageVersion, pythonWorkerDir, workerPythonPath } from '../paths.js';
import { SETUP_COMMAND } from './environment.js';
import { resolvePython } from './python.js';

/** Every channel line starts with it (other stdout lines, a library's prints, are ignored). */
export const LINE_PREFIX = 'AFA ';
/** Protocol major this SDK speaks; every process says its own in its ready message. */
export const PROTOCOL_VERSION = 1;

/** The commands of `python -m afa_worker` the SDK runs. */
export type PythonCommand = 'serve' | 'ray-pool' | 'tensorboard' | 'search';

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

export interface PythonProcessOptions {
  command: PythonCommand;
  args?: readonly string[];
  /** Python with the worker package. @default resolved as for Worker.start ($AFA_PYTHON, the venvs) */
  python?: string;
  /** Extra environment (PYTHONPATH gets the bundled sources in front). @default {} */
  env?: Record<string, string>;
  /** Each stderr chunk (the process's log), besides the kept tail. */
  onStderr?: (chunk: string) => void;
  /** Milliseconds to wait for the ready message. */
  startTimeoutMs: number;
  /** Aborts a slow start (the child is killed). */
  signal?: AbortSignal;
  /** How messages name the process: "the worker", "the Ray pool driver", ... */
  name: string;
}

/** How a process ended. */
export interface ProcessExit {
  readonly exitCode: number | null;
  readonly signal: string | null;
}

export class PythonProcess {
  private readonly listeners = new Set<(message: ProcessMessage) => void>();
  private readonly early: ProcessMessage[] = [];
  private exitInfo: ProcessExit | undefined;
  /** Resolves when the process has exited. */
  readonly exited: Promise<ProcessExit>;

  private constructor(
    private readonly child: ResultPromise,
    private readonly stderr: TailBuffer,
    readonly python: string,
    readonly name: string,
    /** The process's ready message: its version, protocol, pid and the command's detail. */
    readonly ready: Ready,
  ) {
    this.exited = child.then((result) => (this.exitInfo = { exitCode: result.exitCode ?? null, signal: result.signal ?? null }));
  }

  /** Spawns `python -m afa_worker <command> <args>` and resolves once it is ready (its version checked). */
  static async start(options: PythonProcessOptions): Promise<PythonProcess> {
    const python = resolvePython(options.python);
    const stderr = new TailBuffer();
    let child: ResultPromise;
    try {
      child = execa(python, ['-m', 'afa_worker', options.command, ...(options.args ?? [])], {
        cwd: pythonWorkerDir(),
        env: {
          ...options.env,
          // The bundled sources win over any installed copy, so the SDK and its processes always match.
          PYTHONPATH: workerPythonPath(options.env?.PYTHONPATH ?? process.env.PYTHONPATH),
          PYTHONUNBUFFERED: '1',
        },
        stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', buffer: false, reject: false, cleanup: true, forceKillAfterDelay: 3000,
      });
    } catch (error) {
      throw new WorkerStartError(`cannot spawn ${python}: ${(error as Error).message}`, '', null, { cause: error });
    }
    child.stdin?.on('error', () => undefined); // a dead child's closed pipe is reported by its exit
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr.push(chunk);
      options.onStderr?.(chunk);
    });
    let process_: PythonProcess | undefined;
    const early: ProcessMessage[] = [];
    const ready = await awaitReady(child, stderr, python, options, (message) => (process_ ? process_.deliver(message) : early.push(message)));
    process_ = new PythonProcess(child, stderr, python, options.name, ready);
    early.forEach((m) => process_!.deliver(m));
    return process_;
  }

  /** The process id. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** How the process ended; undefined while it runs. */
  get exit(): ProcessExit | undefined {
    return this.exitInfo;
  }

  /** The last lines the process wrote to stderr. */
  stderrTail(lines = 40): string {
    return this.stderr.tail(lines);
  }

  /** Messages after `ready`, in order (those that came before the first listener are replayed to it). */
  onMessage(listener: (message: ProcessMessage) => void): () => void {
    this.listeners.add(listener);
    for (const message of this.early.splice(0)) listener(message);
    return () => this.listeners.delete(listener);
  }

  private deliver(message: ProcessMessage): void {
    if (!this.listeners.size) this.early.push(message);
    for (const listener of this.listeners) listener(message);
  }

  /** Writes one input line on the process's stdin; false when the pipe is full (the line is queued). */
  send(input: ProcessInput): boolean {
    if (this.exitInfo || !this.child.stdin?.writable) return false;
    return this.child.stdin.write(`${LINE_PREFIX}${JSON.stringify(ProcessInput.toJSON(input))}\n`);
  }

  /** Closes stdin: the lifeline's end, after which the process finishes what it holds and exits. */
  closeInput(): void {
    this.child.stdin?.end();
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (!this.exitInfo) this.child.kill(signal);
  }

  /** Closes stdin and waits for the exit; SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<ProcessExit> {
    if (this.exitInfo) return this.exitInfo;
    this.closeInput();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    timer.unref();
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Resolves with the child's ready message once its version checks out; rejects with a
 * WorkerStartError (the child killed, its stderr tail attached) when it reports an error, exits,
 * stays silent past the timeout, or the start is aborted. Messages after `ready` go to `after`.
 */
function awaitReady(child: ResultPromise, stderr: TailBuffer, python: string, options: PythonProcessOptions,
  after: (message: ProcessMessage) => void): Promise<Ready> {
  return new Promise<Ready>((resolve, reject) => {
    let settled = false;
    const fail = (message: string, exitCode: number | null = null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      child.kill('SIGKILL');
      // Give stderr a moment to flush the traceback that explains the failure.
      void child.then(() => setTimeout(() => reject(new WorkerStartError(message, stderr.tail(), exitCode)), 50));
    };
    const onAbort = () => fail(`${options.name} start was aborted`);
    const timer = setTimeout(() => fail(`${options.name} (${python}) was not ready within ${options.startTimeoutMs} ms`), options.startTimeoutMs);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.signal?.aborted) onAbort();
    const early: ProcessMessage[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const message = parseLine(line);
      if (!message) return;
      if (settled) return after(message);
      const m = message.message;
      if (m?.$case === 'error') return fail(`${options.name}: ${m.value.message}`);
      if (m?.$case !== 'ready') return void early.push(message);
      const refusal = versionRefusal(options.name, m.value);
      if (refusal) return fail(refusal);
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve(m.value);
      early.forEach(after);
    });
    void child.then((result) => fail(exitMessage(options.name, python, result, stderr), result.exitCode ?? null));
  });
}

/** Why a child exited before it was ready, with the fix where there is one. */
function exitMessage(name: string, python: string, result: { signal?: string; exitCode?: number; message?: string }, stderr: TailBuffer): string {
  const how = result.signal ? `signal ${result.signal}` : `exit code ${result.exitCode}`;
  const notFound = (result as { code?: string }).code === 'ENOENT' || /ENOENT/.test(String(result.message ?? ''));
  const missing = /ModuleNotFoundError: No module named '([^']+)'/.exec(stderr.tail());
  if (notFound) return `cannot run the Python interpreter ${python}: not found`;
  if (missing) return `${name}'s Python (${python}) lacks the module ${missing[1]}: run \`${SETUP_COMMAND}\`, or install the worker's requirements into it`;
  return `${name} (${python}) exited before it was ready (${how})`;
}

/** A channel line's message, or undefined for any other line. */
export function parseLine(line: string): ProcessMessage | undefined {
  if (!line.startsWith(LINE_PREFIX)) return undefined;
  try {
    return ProcessMessage.fromJSON(JSON.parse(line.slice(LINE_PREFIX.length)));
  } catch {
    return undefined;
  }
}

/** Why a ready process is refused (another protocol or version), or undefined. */
function versionRefusal(name: string, ready: Ready): string | undefined {
  if (ready.protocol !== PROTOCOL_VERSION) {
    return `${name} speaks protocol ${ready.protocol}, this SDK speaks ${PROTOCOL_VERSION}; run \`${SETUP_COMMAND}\``;
  }
  if (ready.version !== packageVersion()) {
    return `${name} is afa-worker ${ready.version}, this SDK is afa-transfer ${packageVersion()}; run \`${SETUP_COMMAND}\``;
  }
  return undefined;
}

/**
 * Runs a one-shot command (pip, venv) to its end, streaming its output lines; resolves with its
 * stdout, rejects with the tail of its output when it fails.
 */
export async function runCommand(file: string, args: readonly string[], onOutput?: (line: string) => void): Promise<string> {
  const child = execa(file, args, { all: true, reject: false });
  child.all?.setEncoding('utf8');
  child.all?.on('data', (chunk: string) => chunk.split('\n').filter(Boolean).forEach((l) => onOutput?.(l)));
  const result = await child;
  if (result.exitCode !== 0) {
    const why = (result as { code?: string }).code === 'ENOENT' ? 'not found' : `exit ${result.exitCode}`;
    throw new AfaError(`${file} ${args.join(' ')} failed (${why}):\n${String(result.all ?? '').slice(-4000)}`);
  }
  return String(result.stdout ?? '');
}

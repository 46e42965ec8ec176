/**
 * A handle on one worker: spawned and owned (`Worker.start`) or attached by address
 * (`Worker.connect`). Lifecycle: STARTING -> RUNNING -> STOPPING -> STOPPED, or FAILED when a
 * spawned worker dies on its own.
 */
import { randomBytes } from 'node:crypto';
import { WorkerClient, type ClientOptions } from '../client/client.js';
import { fromGrpcError, grpcCode } from '../client/errors.js';
import { IllegalStateError, WorkerCrashedError, WorkerStartError, type AfaError } from '../errors.js';
import type { WorkerInfo } from '../gen/afa/v1/afa.js';
import type { Ready } from '../gen/afa/v1/process.js';
import { PROTOCOL_VERSION, PythonProcess } from './python-process.js';
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { ExperimentSpec } from '../dsl/experiment.js';
import type { BackboneSpec } from '../dsl/backbone.js';
import type { DataSpec } from '../dsl/data.js';
import type { Precision } from '../dsl/precision.js';
import { inSpecTerms, PRECISION_MESSAGES, toCreateSessionRequest } from '../run/convert.js';
import { resolve } from 'node:path';
import { obtainSource, openSession, runExperiment, sourceReference, type ExperimentRun, type RunOptions } from '../run/runner.js';
import { dataReference } from '../run/datasets.js';
import type { WeightsAccess } from '../run/weights.js';
import { cacheDir } from '../run/cache.js';
import { packageVersion } from '../paths.js';
import type { PretrainSource } from '../dsl/source.js';
import type { RunEvent } from '../run/events.js';
import { ModelSession, Session } from '../run/session.js';
import { uploadWeights } from '../run/weights.js';
import type { Precision as PrecisionName } from '../dsl/precision.js';

export type WorkerState = 'STARTING' | 'RUNNING' | 'STOPPING' | 'STOPPED' | 'FAILED';

export interface WorkerStartOptions {
  /** Python interpreter with the worker's dependencies. @default $AFA_PYTHON, then the project's venv */
  python?: string;
  /** torch CPU threads in the worker. @default torch's choice */
  threads?: number;
  /** Milliseconds to wait for the worker's ready message and health SERVING. @default 60000 */
  startTimeoutMs?: number;
  /** Milliseconds `stop()` waits for a graceful exit before SIGKILL. @default 10000 */
  stopTimeoutMs?: number;
  /** Extra environment for the worker process. @default {} */
  env?: Record<string, string>;
  /** Receives the worker's stderr (its log). @default dropped, but the tail is kept for errors */
  onStderr?: (chunk: string) => void;
  /** Aborts a slow start. */
  signal?: AbortSignal;
  /** Where the worker writes checkpoints given by relative path. @default the cache ($AFA_CACHE or ~/.cache/afa-transfer/cache) */
  checkpointDir?: string;
  /**
   * Where else it may write checkpoints: directories, or 'anywhere' this user can (the worker runs as
   * you and only answers calls carrying its token). @default 'anywhere'
   */
  allowWrite?: readonly string[] | 'anywhere';
}

export type WorkerStartOptionsWithDefaults = Required<Omit<WorkerStartOptions, 'python' | 'threads' | 'onStderr' | 'signal' | 'checkpointDir'>> &
  Pick<WorkerStartOptions, 'python' | 'threads' | 'onStderr' | 'signal' | 'checkpointDir'>;

export interface WorkerConnectOptions extends ClientOptions {
  /** Milliseconds to wait for health SERVING. @default 10000 */
  timeoutMs?: number;
  /**
   * The worker reads this machine's files by path (same machine and user, or shared storage).
   * Without it, source weights travel over the contract by hash. @default false
   */
  sharedFilesystem?: boolean;
}

function withStartDefaults(options: WorkerStartOptions): WorkerStartOptionsWithDefaults {
  return { startTimeoutMs: 60_000, stopTimeoutMs: 10_000, env: {}, allowWrite: 'anywhere', ...options };
}

/** Codes a dying process produces on in-flight calls. */
const CRASH_CODES = new Set<number>([GrpcStatus.UNAVAILABLE, GrpcStatus.INTERNAL, GrpcStatus.UNKNOWN, GrpcStatus.CANCELLED]);

export class Worker {
  private _state: WorkerState = 'STARTING';
  private readonly transitions: Array<{ state: WorkerState; at: number }> = [];
  private exitInfo: { exitCode: number | null; signal: string | null } | undefined;
  /** Resolves when a spawned worker's process has exited (immediately for an attached one). */
  readonly exited: Promise<void>;

  /** How a spawned worker's process ended: undefined while it runs (and for an attached worker). */
  get exitStatus(): { readonly exitCode: number | null; readonly signal: string | null } | undefined {
    return this.exitInfo;
  }
  readonly client: WorkerClient;

  /** The bearer token the worker requires, for a second client of your own (`Worker.connect(address, { token })`). */
  readonly token: string | undefined;

  private constructor(
    readonly address: string,
    clientOptions: ClientOptions,
    private readonly child?: PythonProcess,
    private readonly stopTimeoutMs = 10_000,
    /** How this worker reaches weight files: by path (a spawned worker shares this disk) or uploaded by hash. */
    readonly weightsAccess: WeightsAccess = 'path',
  ) {
    this.token = clientOptions.token ?? process.env.AFA_TOKEN;
    this.client = new WorkerClient(address, { ...clientOptions, translate: (m, e) => this.translate(m, e) });
    this.exited = child
      ? child.exited.then((exit) => {
          this.exitInfo = exit;
          if (this._state === 'RUNNING' || this._state === 'STARTING') this.setState('FAILED');
        })
      : Promise.resolve();
  }

  /** A spawned worker's ready message (its version, protocol, pid, host and port); undefined for an attached one. */
  get ready(): Ready | undefined {
    return this.child?.ready;
  }

  /** Spawns a worker on 127.0.0.1 with a free port and waits until it serves. */
  static async start(options: WorkerStartOptions = {}): Promise<Worker> {
    const opts = withStartDefaults(options);
    const started = Date.now();
    // Every worker requires a token, loopback included: other accounts on a shared machine can reach
    // 127.0.0.1. It travels in the child's environment, never on its command line (visible in ps).
    const token = randomBytes(32).toString('base64url');
    const args = ['--port', '0', '--exit-with-stdin', '--checkpoint-dir', opts.checkpointDir ?? cacheDir()];
    if (opts.threads) args.push('--threads', String(opts.threads));
    if (opts.allowWrite === 'anywhere') args.push('--allow-write-anywhere');
    else for (const dir of opts.allowWrite) args.push('--allow-write', dir);
    const child = await PythonProcess.start({
      command: 'serve', args, python: opts.python, name: 'the worker', env: { ...opts.env, AFA_TOKEN: token },
      onStderr: opts.onStderr, startTimeoutMs: opts.startTimeoutMs, signal: opts.signal,
    });
    const serve = child.ready.detail?.$case === 'serve' ? child.ready.detail.value : undefined;
    if (!serve) {
      child.kill('SIGKILL');
      throw new WorkerStartError('the worker\'s ready message does not say where it serves', child.stderrTail());
    }
    const address = `127.0.0.1:${serve.port}`;
    const worker = new Worker(address, { token: serve.token || token }, child, opts.stopTimeoutMs);
    const remaining = Math.max(1000, opts.startTimeoutMs - (Date.now() - started));
    const serving = await Promise.race([worker.client.waitForServing(remaining, opts.signal), worker.exited.then(() => false)]);
    if (!serving) {
      await worker.kill();
      throw new WorkerStartError(`the worker at ${address} did not report SERVING within ${remaining} ms`, child.stderrTail());
    }
    worker.setState('RUNNING');
    return worker;
  }

  /** Attaches to a running worker (e.g. `afa-worker serve --host 0.0.0.0 --token ...` elsewhere). */
  static async connect(address: string, options: WorkerConnectOptions = {}): Promise<Worker> {
    const worker = new Worker(address, options, undefined, 10_000, options.sharedFilesystem ? 'path' : 'upload');
    const serving = await worker.client.waitForServing(options.timeoutMs ?? 10_000);
    if (!serving) {
      worker.setState('FAILED');
      try {
        // One real call to surface the reason (UNAUTHENTICATED, UNAVAILABLE, ...).
        await worker.client.getInfo({ timeoutMs: 2000 });
      } finally {
        worker.client.close();
      }
      throw new WorkerStartError(`the worker at ${address} is not SERVING`, '');
    }
    const info = await worker.client.getInfo({ timeoutMs: options.timeoutMs ?? 10_000 });
    if (info.protocolVersion !== PROTOCOL_VERSION) {
      worker.client.close();
      throw new WorkerStartError(`the worker at ${address} (afa-worker ${info.workerVersion}) speaks protocol ${info.protocolVersion}, ` +
        `this SDK (afa-transfer ${packageVersion()}) speaks ${PROTOCOL_VERSION}: install the matching afa-worker there`, '');
    }
    worker.setState('RUNNING');
    return worker;
  }

  get state(): WorkerState {
    return this._state;
  }

  /** The spawned process id (undefined for an attached worker). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The last lines the spawned worker wrote to stderr. */
  stderrTail(lines = 40): string {
    return this.child?.stderrTail(lines) ?? '';
  }

  get history(): ReadonlyArray<{ state: WorkerState; at: number }> {
    return this.transitions;
  }

  private setState(state: WorkerState): void {
    this._state = state;
    this.transitions.push({ state, at: Date.now() });
  }

  /** Throws `IllegalStateError` unless the worker is RUNNING. */
  assertRunning(what: string): void {
    if (this._state !== 'RUNNING') {
      if (this._state === 'FAILED' && this.exitInfo) throw this.crashError(what);
      throw new IllegalStateError(`${what}: the worker is ${this._state}, not RUNNING`);
    }
  }

  async info(options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<WorkerInfo> {
    this.assertRunning('info');
    return this.client.getInfo({ timeoutMs: 10_000, ...options });
  }

  /**
   * Runs an experiment: events as an async iterable, the typed result as a promise.
   * Abort `options.signal` to cancel within one training step.
   */
  run(spec: ExperimentSpec, options: RunOptions = {}): ExperimentRun {
    this.assertRunning('run');
    return runExperiment(this.client, spec, options, this.weightsAccess);
  }

  /**
   * The weights file of a pretrained source: from the cache (keyed by the hash of the backbone and
   * the pretraining spec), or pretrained now on this worker and cached.
   */
  async prepareSource(backbone: BackboneSpec, source: PretrainSource,
    options: { cacheDir?: string; signal?: AbortSignal; device?: string; precision?: Precision; onEvent?: (event: RunEvent) => void } = {},
  ): Promise<{ path: string; cached: boolean }> {
    this.assertRunning('prepareSource');
    return obtainSource(this.client, { backbone, device: options.device ?? '', precision: options.precision }, source, cacheDir(options.cacheDir), options.signal,
      options.onEvent ?? (() => undefined), this.weightsAccess);
  }

  /** Opens a session to drive stages one by one (custom schedules, branching between stages). */
  async createSession(options: {
    backbone: BackboneSpec;
    data: DataSpec;
    seed?: number;
    /** Source weights file; omit for a session with no source (pretraining, from scratch). */
    sourceWeights?: string;
    device?: string;
    /** @default "auto" (see `Precision`) */
    precision?: Precision;
    signal?: AbortSignal;
    /** The creation's progress events (source load, data decode). */
    onEvent?: (event: RunEvent) => void;
  }): Promise<Session> {
    this.assertRunning('createSession');
    const seed = options.seed ?? 0;
    const source = await sourceReference(this.client, options.sourceWeights, this.weightsAccess, options.signal);
    const data = await dataReference(this.client, options.data, this.weightsAccess, 'data', options.signal);
    const request = toCreateSessionRequest({ ...options, data: data.data, sourceWeights: undefined, ...source, seed });
    return openSession(this.client, request, seed, 'transfer', options.onEvent ?? (() => undefined),
      { data, fields: { data: 'data', sourceWeights: 'sourceWeights' }, signal: options.signal });
  }

  /**
   * A checkpoint (the `.safetensors` a run wrote, with its model card) loaded on this worker to
   * predict and export. A worker that does not share this disk gets the file uploaded by hash.
   */
  async loadModel(checkpoint: string, options: { device?: string; precision?: PrecisionName; signal?: AbortSignal } = {}): Promise<ModelSession> {
    this.assertRunning('loadModel');
    const model = this.weightsAccess === 'path'
      ? { $case: 'path' as const, value: resolve(checkpoint) }
      : { $case: 'sha256' as const, value: (await uploadWeights(this.client, checkpoint, options.signal, 'checkpoint')).sha256 };
    const r = await this.client.loadModel({ model, device: options.device ?? '', precision: PRECISION_MESSAGES[options.precision ?? 'auto'] },
      { signal: options.signal }).catch((error: unknown) => Promise.reject(inSpecTerms(error, { renames: { path: 'checkpoint', sha256: 'checkpoint' } })));
    return new ModelSession(this.client, r.sessionId, r.card!, r.device);
  }

  private crashError(method: string, cause?: unknown): WorkerCrashedError {
    const how = this.exitInfo?.signal ? `killed by ${this.exitInfo.signal}` : `exit code ${this.exitInfo?.exitCode}`;
    return new WorkerCrashedError(`${method}: the worker process died (${how})`, this.stderrTail(), this.exitInfo?.exitCode ?? null,
      this.exitInfo?.signal ?? null, { cause });
  }

  /** A call failing because the process died becomes a WorkerCrashedError with the stderr tail. */
  private async translate(method: string, error: unknown): Promise<AfaError> {
    const code = grpcCode(error);
    if (this.child && code !== undefined && CRASH_CODES.has(code) && this._state !== 'STOPPING') {
      // The call's failure can arrive a moment before the exit event.
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 1500))]);
      if (this.exitInfo) return this.crashError(method, error);
    }
    return fromGrpcError(method, error);
  }

  /** Graceful stop: SIGTERM (the worker cancels streams and drains), then SIGKILL after the timeout. */
  async stop(): Promise<void> {
    if (this._state === 'STOPPED') return;
    const wasFailed = this._state === 'FAILED';
    this.setState('STOPPING');
    this.client.close();
    if (this.child && !this.exitInfo && !wasFailed) {
      this.child.kill('SIGTERM');
      const timedOut = await Promise.race([
        this.exited.then(() => false),
        new Promise<boolean>((r) => setTimeout(() => r(true), this.stopTimeoutMs).unref()),
      ]);
      if (timedOut) await this.kill();
    }
    this.setState('STOPPED');
  }

  /** Immediate SIGKILL of a spawned worker (no drain). */
  async kill(): Promise<void> {
    if (this.child && !this.exitInfo) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    this.client.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

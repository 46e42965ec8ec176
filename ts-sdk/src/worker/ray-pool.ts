/**
 * Workers as Ray actors: spawns the worker package's Ray driver (`python -m afa_worker ray-pool`),
 * which creates one actor per worker on the cluster and reports each actor's address and token on
 * JSON lines, again when Ray restarts one. The driver keeps a pipe on its stdin, so closing it (or
 * this process dying, even by SIGKILL) removes every actor. The sweep engine stays the scheduler.
 */
import { execa, type ResultPromise } from 'execa';
import { createInterface } from 'node:readline';
import { pythonWorkerDir, workerPythonPath } from '../paths.js';
import { AfaError, UsageError, WorkerStartError } from '../errors.js';
import { resolvePython } from './python.js';
import { TailBuffer } from './process.js';

export interface RayPoolOptions {
  /** 'auto' ($RAY_ADDRESS or the cluster started on this machine), the GCS host:port, or 'local' (a throwaway cluster). @default 'auto' */
  address?: string;
  /** Worker actors. @default 1 */
  workers?: number;
  /** Ray CPUs each actor reserves. @default 1 */
  cpusPerWorker?: number;
  /** Ray GPUs each actor reserves. @default 1 where the cluster has GPUs, else 0 */
  gpusPerWorker?: number;
  /** torch threads per worker. @default its CPUs */
  threads?: number;
  /** Restarts per actor after its process or node died; -1 for no limit. @default -1 */
  maxRestarts?: number;
  /** With address 'local': the throwaway cluster's CPUs. @default this machine's */
  localCpus?: number;
  /** Python with the worker package and Ray (the driver's; the cluster's nodes need the package too). */
  python?: string;
  /** Milliseconds to wait for the cluster. @default 120000 */
  startTimeoutMs?: number;
  /** Milliseconds a slot waits for its actor's first start (placement may wait for a node to join). @default 360000 */
  actorStartTimeoutMs?: number;
  /** Milliseconds a slot waits for Ray to bring a lost actor back. @default 180000 */
  restartTimeoutMs?: number;
  env?: Record<string, string>;
  /** The driver's log (Ray's own warnings). */
  onStderr?: (chunk: string) => void;
}

/** Where one actor's worker serves, in the incarnation Ray last started. */
export interface RayEndpoint {
  slot: number;
  address: string;
  token: string;
  nodeId: string;
  nodeIp: string;
  hostname: string;
  pid: number;
  incarnation: string;
}

type DriverLine =
  | { event: 'ready'; address: string; nodes: string[]; gpus: number }
  | { event: 'worker'; slot: number; address: string; token: string; node_id: string; node_ip: string; hostname: string; pid: number; incarnation: string }
  | { event: 'down' | 'dead'; slot: number; reason: string }
  | { event: 'error'; message: string };

export type RayPoolEvent = { type: 'worker'; endpoint: RayEndpoint } | { type: 'down' | 'dead'; slot: number; reason: string };

const MAX_WORKERS = 1024;

function checkCount(value: number | undefined, field: string, min: number, max: number, integer: boolean): void {
  if (value === undefined) return;
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw new UsageError(field, `must be ${integer ? 'a whole number' : 'a number'} in [${min}, ${max}], got ${value}`);
  }
}

export class RayPool {
  private readonly latest = new Map<number, RayEndpoint>();
  private readonly dead = new Map<number, string>();
  private readonly waiters = new Set<() => void>();
  private exited = false;
  private readonly listeners = new Set<(event: RayPoolEvent) => void>();

  private constructor(
    private readonly child: ResultPromise,
    private readonly stderr: TailBuffer,
    readonly clusterAddress: string,
    readonly nodes: readonly string[],
    readonly workers: number,
    private readonly timeouts: { actorStartMs: number; restartMs: number },
  ) {
    void child.then(() => {
      this.exited = true;
      this.wake();
    });
  }

  static async start(options: RayPoolOptions = {}): Promise<RayPool> {
    const workers = options.workers ?? 1;
    checkCount(workers, 'workers', 1, MAX_WORKERS, true);
    checkCount(options.cpusPerWorker, 'cpusPerWorker', 0, 1024, false);
    checkCount(options.gpusPerWorker, 'gpusPerWorker', 0, 64, false);
    checkCount(options.threads, 'threads', 1, 1024, true);
    checkCount(options.maxRestarts, 'maxRestarts', -1, 1_000_000, true);
    const python = resolvePython(options.python);
    const args = ['-m', 'afa_worker', 'ray-pool', '--address', options.address ?? 'auto', '--workers', String(workers)];
    if (options.cpusPerWorker !== undefined) args.push('--cpus-per-worker', String(options.cpusPerWorker));
    if (options.gpusPerWorker !== undefined) args.push('--gpus-per-worker', String(options.gpusPerWorker));
    if (options.threads !== undefined) args.push('--threads', String(options.threads));
    if (options.maxRestarts !== undefined) args.push('--max-restarts', String(options.maxRestarts));
    if (options.localCpus !== undefined) args.push('--local-cpus', String(options.localCpus));
    const stderr = new TailBuffer();
    const child = execa(python, args, {
      cwd: pythonWorkerDir(),
      env: { ...options.env, PYTHONPATH: workerPythonPath(options.env?.PYTHONPATH ?? process.env.PYTHONPATH), PYTHONUNBUFFERED: '1' },
      stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', reject: false, buffer: false,
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr.push(chunk);
      options.onStderr?.(chunk);
    });
    const lines = createInterface({ input: child.stdout! });
    let pool: RayPool | undefined;
    const early: DriverLine[] = [];
    const ready = new Promise<Extract<DriverLine, { event: 'ready' }>>((resolve, reject) => {
      lines.on('line', (text) => {
        let line: DriverLine;
        try {
          line = JSON.parse(text) as DriverLine;
        } catch {
          return; // Ray prints to stdout now and then; our lines are JSON
        }
        if (line.event === 'ready') resolve(line);
        else if (line.event === 'error') reject(new WorkerStartError(`Ray: ${line.message}`, stderr.tail()));
        else if (pool) pool.handle(line);
        else early.push(line);
      });
      void child.then((result) => reject(new WorkerStartError(
        `the Ray pool driver (${python}) exited before the cluster was ready (${result.signal ? `signal ${result.signal}` : `exit code ${result.exitCode}`})`,
        stderr.tail())));
    });
    ready.catch(() => undefined); // observed through the race below
    const timeoutMs = options.startTimeoutMs ?? 120_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const line = await Promise.race([ready, new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new WorkerStartError(`the Ray cluster at ${options.address ?? 'auto'} was not ready within ${timeoutMs} ms`,
          stderr.tail())), timeoutMs);
      })]);
      pool = new RayPool(child, stderr, line.address, line.nodes, workers,
        { actorStartMs: options.actorStartTimeoutMs ?? 360_000, restartMs: options.restartTimeoutMs ?? 180_000 });
      early.forEach((l) => pool!.handle(l));
      return pool;
    } catch (error) {
      child.kill('SIGKILL');
      await child;
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The driver's process id. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  stderrTail(lines = 40): string {
    return this.stderr.tail(lines);
  }

  /** Pool events: an actor's (new) endpoint, an actor unreachable, an actor gone for good. */
  onEvent(listener: (event: RayPoolEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private handle(line: DriverLine): void {
    if (line.event === 'worker') {
      const endpoint: RayEndpoint = { slot: line.slot, address: line.address, token: line.token, nodeId: line.node_id, nodeIp: line.node_ip,
        hostname: line.hostname, pid: line.pid, incarnation: line.incarnation };
      this.latest.set(line.slot, endpoint);
      this.emit({ type: 'worker', endpoint });
    } else if (line.event === 'dead' || line.event === 'down') {
      if (line.event === 'dead') this.dead.set(line.slot, line.reason);
      this.emit({ type: line.event, slot: line.slot, reason: line.reason });
    }
    this.wake();
  }

  private emit(event: RayPoolEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /**
   * The slot's endpoint once Ray runs an incarnation other than `after` (any, without it): the
   * first start, or the restart after a crash or a lost node. Rejects when the actor is gone for
   * good, the driver exited, `actorStartTimeoutMs` (first start) or `restartTimeoutMs` passed, or
   * `signal` aborted.
   */
  async endpoint(slot: number, after?: string, signal?: AbortSignal): Promise<RayEndpoint> {
    const timeoutMs = after === undefined ? this.timeouts.actorStartMs : this.timeouts.restartMs;
    const until = Date.now() + timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const current = this.latest.get(slot);
      if (current && current.incarnation !== after) return current;
      const gone = this.dead.get(slot);
      if (gone !== undefined) throw new AfaError(`Ray worker ${slot + 1} is gone for good (its restarts are used up): ${gone}`);
      if (this.exited) throw new AfaError(`the Ray pool driver exited${this.stderr.tail(5) ? `:\n${this.stderr.tail(5)}` : ''}`);
      const left = until - Date.now();
      if (left <= 0) {
        throw new AfaError(`Ray did not ${after === undefined ? 'start' : 'restart'} worker ${slot + 1} within ${timeoutMs} ms ` +
          '(the cluster may lack the CPUs/GPUs it asks for)');
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        signal?.addEventListener('abort', done, { once: true });
        this.waiters.add(done);
      });
    }
  }

  /** Removes every actor (the driver kills them and disconnects); SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (this.exited) return;
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    timer.unref();
    await this.child;
    clearTimeout(timer);
  }
}

/**
 * Workers as Ray actors: spawns the worker package's Ray driver (`python -m afa_worker ray-pool`,
 * through the one door to Python), which creates one actor per worker on the cluster and reports
 * each actor's address and token on the line channel, again when Ray restarts one. The driver keeps a pipe on its stdin, so closing it (or
 * this process dying, even by SIGKILL) removes every actor. The sweep engine stays the scheduler.
 */
import { AfaError } from '../errors.js';
import { Fields } from '../fields.js';
import type { ProcessMessage } from '../gen/afa/v1/process.js';
import { PythonProcess } from './python-process.js';

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

export type RayPoolEvent = { type: 'worker'; endpoint: RayEndpoint } | { type: 'down' | 'dead'; slot: number; reason: string };

const MAX_WORKERS = 1024;

/** The options' counts within their bounds (a UsageError naming the option otherwise). */
function checkOptions(options: RayPoolOptions): number {
  const f = Fields.usage('');
  const workers = f.at('workers').count(options.workers ?? 1, { max: MAX_WORKERS });
  f.optional(options, 'cpusPerWorker', (c, v) => c.number(v, { min: 0, max: 1024 }));
  f.optional(options, 'gpusPerWorker', (c, v) => c.number(v, { min: 0, max: 64 }));
  f.optional(options, 'threads', (c, v) => c.count(v, { max: 1024 }));
  f.optional(options, 'maxRestarts', (c, v) => c.number(v, { integer: true, min: -1, max: 1_000_000 }));
  return workers;
}

export class RayPool {
  private readonly latest = new Map<number, RayEndpoint>();
  private readonly dead = new Map<number, string>();
  private readonly waiters = new Set<() => void>();
  private exited = false;
  private readonly listeners = new Set<(event: RayPoolEvent) => void>();

  private constructor(
    private readonly driver: PythonProcess,
    readonly clusterAddress: string,
    readonly nodes: readonly string[],
    readonly workers: number,
    private readonly timeouts: { actorStartMs: number; restartMs: number },
  ) {
    void driver.exited.then(() => {
      this.exited = true;
      this.wake();
    });
    driver.onMessage((message) => this.handle(message));
  }

  static async start(options: RayPoolOptions = {}): Promise<RayPool> {
    const workers = checkOptions(options);
    const args = ['--address', options.address ?? 'auto', '--workers', String(workers)];
    if (options.cpusPerWorker !== undefined) args.push('--cpus-per-worker', String(options.cpusPerWorker));
    if (options.gpusPerWorker !== undefined) args.push('--gpus-per-worker', String(options.gpusPerWorker));
    if (options.threads !== undefined) args.push('--threads', String(options.threads));
    if (options.maxRestarts !== undefined) args.push('--max-restarts', String(options.maxRestarts));
    if (options.localCpus !== undefined) args.push('--local-cpus', String(options.localCpus));
    const driver = await PythonProcess.start({
      command: 'ray-pool', args, python: options.python, env: options.env, onStderr: options.onStderr, name: 'Ray',
      startTimeoutMs: options.startTimeoutMs ?? 120_000,
    });
    const ready = driver.ready.detail?.$case === 'rayPool' ? driver.ready.detail.value : { address: '', nodes: [], gpus: 0 };
    return new RayPool(driver, ready.address, ready.nodes, workers,
      { actorStartMs: options.actorStartTimeoutMs ?? 360_000, restartMs: options.restartTimeoutMs ?? 180_000 });
  }

  /** The driver's process id. */
  get pid(): number | undefined {
    return this.driver.pid;
  }

  stderrTail(lines = 40): string {
    return this.driver.stderrTail(lines);
  }

  /** Pool events: an actor's (new) endpoint, an actor unreachable, an actor gone for good. */
  onEvent(listener: (event: RayPoolEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private handle(message: ProcessMessage): void {
    const m = message.message;
    if (m?.$case === 'rayWorker') {
      const w = m.value;
      const endpoint: RayEndpoint = { slot: w.slot, address: w.address, token: w.token, nodeId: w.nodeId, nodeIp: w.nodeIp,
        hostname: w.hostname, pid: w.pid, incarnation: w.incarnation };
      this.latest.set(w.slot, endpoint);
      this.emit({ type: 'worker', endpoint });
    } else if (m?.$case === 'rayWorkerLost') {
      if (m.value.gone) this.dead.set(m.value.slot, m.value.reason);
      this.emit({ type: m.value.gone ? 'dead' : 'down', slot: m.value.slot, reason: m.value.reason });
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
      if (this.exited) throw new AfaError(`the Ray pool driver exited${this.driver.stderrTail(5) ? `:\n${this.driver.stderrTail(5)}` : ''}`);
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
    await this.driver.stop(timeoutMs);
  }
}

/** The workers a sweep runs on: local ones it starts (and restarts after a crash), remote ones, or Ray actors. */
import { cpus, hostname } from 'node:os';
import { Worker } from '../worker/worker.js';
import { RayPool, type RayPoolOptions } from '../worker/ray-pool.js';
import type { DispatchSlot } from './dispatcher.js';

/** A slot of real workers: the dispatcher's seam, plus what the slot holds beyond its worker. */
export interface WorkerSlot extends DispatchSlot<Worker> {
  /** Frees what the slot holds beyond its worker (a Ray pool); called once the sweep is over. */
  readonly release?: () => Promise<void>;
}

export interface PoolOptions {
  /** Local workers to start. @default 1 (ignored when `remote` or `ray` is given) */
  local?: number;
  /** Addresses of running workers. */
  remote?: readonly string[];
  /** Workers as actors on a Ray cluster; `workers` of them (default 1). */
  ray?: RayPoolOptions;
  /** torch threads per local worker. @default the CPU count divided among the workers */
  threads?: number;
  python?: string;
  token?: string;
}

export function planSlots(options: PoolOptions): WorkerSlot[] {
  if (options.ray) return raySlots({ python: options.python, ...options.ray });
  if (options.remote?.length) {
    return options.remote.map((address) => ({
      name: address,
      worker: undefined,
      node: address.replace(/:\d+$/, ''),
      create: () => Worker.connect(address, { token: options.token }),
    }));
  }
  const n = Math.max(1, options.local ?? 1);
  const threads = options.threads ?? Math.max(1, Math.floor(cpus().length / n));
  return Array.from({ length: n }, (_, i) => ({
    name: `local-${i + 1}`,
    worker: undefined,
    node: hostname(),
    create: () => Worker.start({ threads, python: options.python }),
  }));
}

/** One slot per actor; the pool starts with the first slot's worker and stops with the last release. */
function raySlots(options: RayPoolOptions): WorkerSlot[] {
  let pool: Promise<RayPool> | undefined;
  const started = () => (pool ??= RayPool.start(options));
  let released = false;
  const release = async () => {
    if (released || !pool) return;
    released = true;
    await (await pool.catch(() => undefined))?.stop();
  };
  return Array.from({ length: options.workers ?? 1 }, (_, i) => {
    let incarnation: string | undefined;
    const slot: WorkerSlot = {
      name: `ray-${i + 1}`,
      worker: undefined,
      release,
      create: async (signal) => {
        const endpoint = await (await started()).endpoint(i, incarnation, signal);
        incarnation = endpoint.incarnation;
        slot.node = `${endpoint.hostname} ${endpoint.nodeIp} (Ray node ${endpoint.nodeId.slice(0, 8)})`;
        return Worker.connect(endpoint.address, { token: endpoint.token, timeoutMs: 30_000 });
      },
    };
    return slot;
  });
}

export async function startSlots(slots: WorkerSlot[]): Promise<void> {
  await Promise.all(slots.map(async (slot) => {
    slot.worker = await slot.create();
  }));
}

export async function stopSlots(slots: WorkerSlot[]): Promise<void> {
  await Promise.all(slots.map((slot) => slot.worker?.stop().catch(() => undefined)));
  await Promise.all(slots.map((slot) => slot.release?.().catch(() => undefined)));
}

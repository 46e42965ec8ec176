/** The workers a sweep runs on: local ones it starts (and restarts after a crash), or remote ones. */
import { cpus } from 'node:os';
import { Worker } from '../worker/worker.js';

export interface WorkerSlot {
  readonly name: string;
  worker: Worker | undefined;
  /** A fresh worker for this slot (after a crash); remote slots reconnect. */
  readonly create: () => Promise<Worker>;
}

export interface PoolOptions {
  /** Local workers to start. @default 1 (ignored when `remote` is given) */
  local?: number;
  /** Addresses of running workers. */
  remote?: readonly string[];
  /** torch threads per local worker. @default the CPU count divided among the workers */
  threads?: number;
  python?: string;
  token?: string;
}

export function planSlots(options: PoolOptions): WorkerSlot[] {
  if (options.remote?.length) {
    return options.remote.map((address) => ({
      name: address,
      worker: undefined,
      create: () => Worker.connect(address, { token: options.token }),
    }));
  }
  const n = Math.max(1, options.local ?? 1);
  const threads = options.threads ?? Math.max(1, Math.floor(cpus().length / n));
  return Array.from({ length: n }, (_, i) => ({
    name: `local-${i + 1}`,
    worker: undefined,
    create: () => Worker.start({ threads, python: options.python }),
  }));
}

export async function startSlots(slots: WorkerSlot[]): Promise<void> {
  await Promise.all(slots.map(async (slot) => {
    slot.worker = await slot.create();
  }));
}

export async function stopSlots(slots: WorkerSlot[]): Promise<void> {
  await Promise.all(slots.map((slot) => slot.worker?.stop().catch(() => undefined)));
}

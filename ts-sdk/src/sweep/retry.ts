/** When a failed trial is tried again: the sweep runner asks its retry policy after each failure. */
import { WorkerCrashedError, WorkerUnavailableError } from '../errors.js';

export interface RetryPolicy {
  /** Whether the trial runs again after failing its `attempt`-th time (1-based) with `error`. */
  shouldRetry(error: unknown, attempt: number): boolean;
}

/** A worker that died or became unreachable: the trial itself may be fine. */
export function isWorkerLoss(error: unknown): boolean {
  return error instanceof WorkerCrashedError || error instanceof WorkerUnavailableError;
}

/** Retries a trial whose worker was lost, up to `maxAttempts` attempts in all; never a trial that failed by itself. */
export function retryOnWorkerLoss(maxAttempts = 2): RetryPolicy {
  return { shouldRetry: (error, attempt) => isWorkerLoss(error) && attempt < maxAttempts };
}

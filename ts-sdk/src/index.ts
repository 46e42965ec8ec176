/**
 * AFA transfer SDK: drive a bundled PyTorch worker over gRPC for deep transfer learning by
 * Attentive Feature Alignment and its baselines.
 *
 * @example
 * ```ts
 * import { Worker } from 'afa-transfer';
 *
 * await using worker = await Worker.start();
 * const info = await worker.info();
 * console.log(info.torchVersion, info.backbones);
 * ```
 */
export { Worker } from './worker/worker.js';
export type { WorkerState, WorkerStartOptions, WorkerStartOptionsWithDefaults, WorkerConnectOptions } from './worker/worker.js';
export { setupWorkerEnvironment } from './worker/setup.js';
export type { WorkerSetupOptions } from './worker/setup.js';
export { WorkerClient, ServingStatus, AFA_SERVICE } from './client/client.js';
export type { ClientOptions } from './client/client.js';
export type { CallOptions } from './client/calls.js';
export { PROTOCOL_VERSION } from './worker/process.js';
export {
  AfaError,
  IllegalStateError,
  WorkerStartError,
  WorkerCrashedError,
  WorkerCallError,
  SpecError,
  NotFoundError,
  SessionBusyError,
  UnauthenticatedError,
  DeadlineExceededError,
  WorkerUnavailableError,
  ResourceExhaustedError,
  CancelledError,
  StageFailedError,
} from './errors.js';
export * as proto from './gen/afa/v1/afa.js';

/**
 * `afa-transfer/proto`: the contract (proto/afa/v1/*.proto) as generated messages, a typed client
 * for one worker address, and the DSL's plain data as the contract's messages, for driving a
 * worker with code of your own (another language's client speaks the same contract).
 *
 * @example
 * ```ts
 * import { WorkerClient, toCreateSessionRequest } from 'afa-transfer/proto';
 * const client = new WorkerClient('127.0.0.1:50051', { token });
 * const session = await client.createSession(toCreateSessionRequest({ backbone, data, seed: 0 }));
 * ```
 */
export * from './gen/afa/v1/afa.js';
export { WorkerClient, ServingStatus, AFA_SERVICE, MAX_MESSAGE_BYTES } from './client/client.js';
export type { ClientOptions } from './client/client.js';
export type { CallOptions } from './client/calls.js';
export { fromGrpcError } from './client/errors.js';
export { toCreateSessionRequest, toStageMessage, toSpecField } from './run/convert.js';
export type { SessionOptions, SpecFieldContext } from './run/convert.js';
export { PROTOCOL_VERSION } from './worker/python-process.js';

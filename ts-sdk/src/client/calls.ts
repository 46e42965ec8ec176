/** Promise and AsyncIterable wrappers over grpc-js calls, with deadlines, AbortSignal and typed errors. */
import type { ClientReadableStream, ClientUnaryCall, ClientWritableStream, Metadata, ServiceError } from '@grpc/grpc-js';
import { CancelledError, type AfaError } from '../errors.js';
import { fromGrpcError } from './errors.js';

export interface CallOptions {
  /** Abort the call; the promise rejects (or the iterator throws) with a `CancelledError`. */
  signal?: AbortSignal;
  /** Milliseconds before the call fails with a `DeadlineExceededError`. */
  timeoutMs?: number;
}

/** Turns a low-level error into the typed one; the worker handle uses it to detect crashes. */
export type ErrorTranslator = (method: string, error: unknown) => Promise<AfaError>;

export const defaultTranslator: ErrorTranslator = async (method, error) => fromGrpcError(method, error);

function abortError(method: string, signal: AbortSignal): CancelledError {
  const reason = signal.reason instanceof Error ? signal.reason.message : String(signal.reason ?? 'aborted');
  return new CancelledError(`${method}: cancelled by the caller (${reason})`, method, { cause: signal.reason });
}

type UnaryInvoker<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: { deadline?: Date },
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

export function unary<Req, Res>(
  method: string,
  invoke: UnaryInvoker<Req, Res>,
  request: Req,
  metadata: Metadata,
  options: CallOptions,
  translate: ErrorTranslator,
): Promise<Res> {
  const { signal, timeoutMs } = options;
  if (signal?.aborted) return Promise.reject(abortError(method, signal));
  return new Promise<Res>((resolve, reject) => {
    const deadline = timeoutMs === undefined ? undefined : new Date(Date.now() + timeoutMs);
    const onAbort = () => call.cancel();
    const call = invoke(request, metadata, deadline ? { deadline } : {}, (error, response) => {
      signal?.removeEventListener('abort', onAbort);
      if (!error) return resolve(response);
      if (signal?.aborted) return reject(abortError(method, signal));
      translate(method, error).then(reject, reject);
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A server stream as an async iterator. Breaking out of `for await`, throwing in its body or
 * aborting the signal cancels the RPC, and the worker stops at its next step.
 */
export async function* serverStream<Res>(
  method: string,
  open: () => ClientReadableStream<Res>,
  options: CallOptions,
  translate: ErrorTranslator,
): AsyncGenerator<Res, void, undefined> {
  const { signal } = options;
  if (signal?.aborted) throw abortError(method, signal);
  const call = open();
  const onAbort = () => call.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const message of call as AsyncIterable<Res>) {
      yield message;
    }
  } catch (error) {
    if (signal?.aborted) throw abortError(method, signal);
    throw await translate(method, error);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    call.cancel();
  }
}

/**
 * A client stream: writes every message of `messages` (waiting when the transport is full), then
 * the response. Aborting the signal, or `messages` throwing, cancels the call.
 */
export async function clientStream<Req, Res>(
  method: string,
  open: (callback: (error: ServiceError | null, response?: Res) => void) => ClientWritableStream<Req>,
  messages: AsyncIterable<Req>,
  options: CallOptions,
  translate: ErrorTranslator,
): Promise<Res> {
  const { signal } = options;
  if (signal?.aborted) throw abortError(method, signal);
  let settle!: { resolve: (r: Res) => void; reject: (e: unknown) => void };
  let answered = false;
  const response = new Promise<Res>((resolve, reject) => (settle = { resolve, reject }));
  const call = open((error, result) => {
    answered = true;
    if (!error) return settle.resolve(result as Res);
    if (signal?.aborted) return settle.reject(abortError(method, signal));
    translate(method, error).then(settle.reject, settle.reject);
  });
  const onAbort = () => call.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  // An early answer (a refusal) ends the writing: the rest of the messages are not read.
  const answer = response.then(() => undefined, () => undefined);
  const writing = (async () => {
    try {
      for await (const message of messages) {
        if (answered) return;
        if (!call.write(message)) await Promise.race([new Promise<void>((r) => call.once('drain', () => r())), answer]);
      }
      call.end();
    } catch (error) {
      call.cancel();
      throw error;
    }
  })();
  writing.catch(() => undefined);
  try {
    const [result] = await Promise.all([response, writing]);
    return result;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

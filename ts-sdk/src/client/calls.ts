/** Promise and AsyncIterable wrappers over grpc-js calls, with deadlines, AbortSignal and typed errors. */
import type { ClientReadableStream, ClientUnaryCall, Metadata, ServiceError } from '@grpc/grpc-js';
import { CancelledError, fromGrpcError, type AfaError } from '../errors.js';
import { status as GrpcStatus } from '@grpc/grpc-js';

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
  return new CancelledError(method, GrpcStatus.CANCELLED, `cancelled by the caller (${reason})`, { cause: signal.reason });
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

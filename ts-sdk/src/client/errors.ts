/**
 * The client's edge: a gRPC status becomes the SDK's transport-free typed error (`errors.ts`), its
 * field violation read from the status details, never parsed from the message.
 */
import { status as GrpcStatus, type Metadata } from '@grpc/grpc-js';
import {
  AfaError,
  CancelledError,
  DeadlineExceededError,
  NotFoundError,
  ResourceExhaustedError,
  SessionBusyError,
  SpecError,
  UnauthenticatedError,
  UnimplementedError,
  WorkerCallError,
  WorkerUnavailableError,
} from '../errors.js';
import { fieldViolation } from './status-details.js';

interface GrpcLikeError {
  code?: number;
  details?: string;
  message?: string;
  metadata?: Metadata;
}

/** gRPC's name of a status code ("NOT_FOUND"), or "status N" for a code it does not have. */
export function statusName(code: number): string {
  return (GrpcStatus as unknown as Record<number, string>)[code] ?? `status ${code}`;
}

type CallErrorClass = new (method: string, status: string, details: string, options?: { cause?: unknown }) => WorkerCallError;

const BY_CODE: Partial<Record<number, CallErrorClass>> = {
  [GrpcStatus.NOT_FOUND]: NotFoundError,
  [GrpcStatus.FAILED_PRECONDITION]: SessionBusyError,
  [GrpcStatus.UNAUTHENTICATED]: UnauthenticatedError,
  [GrpcStatus.DEADLINE_EXCEEDED]: DeadlineExceededError,
  [GrpcStatus.UNAVAILABLE]: WorkerUnavailableError,
  [GrpcStatus.RESOURCE_EXHAUSTED]: ResourceExhaustedError,
  [GrpcStatus.UNIMPLEMENTED]: UnimplementedError,
};

/** Maps a gRPC error to the typed error for its status code. */
export function fromGrpcError(method: string, error: unknown): AfaError {
  if (error instanceof AfaError) return error;
  const e = (error ?? {}) as GrpcLikeError;
  const code = typeof e.code === 'number' ? e.code : GrpcStatus.UNKNOWN;
  const details = e.details ?? e.message ?? String(error);
  const options = { cause: error };
  if (code === GrpcStatus.INVALID_ARGUMENT) return new SpecError(method, details, fieldViolation(e.metadata), options);
  if (code === GrpcStatus.CANCELLED) return new CancelledError(`${method}: ${details || 'cancelled'}`, method, options);
  const Class = BY_CODE[code] ?? WorkerCallError;
  return new Class(method, statusName(code), details, options);
}

/** The raw gRPC status code of a failed call, for the worker handle's crash detection only. */
export function grpcCode(error: unknown): number | undefined {
  const code = (error as GrpcLikeError | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

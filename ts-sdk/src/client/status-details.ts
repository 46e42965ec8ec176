/**
 * Structured error details of a gRPC status (the standard `grpc-status-details-bin` trailer, a
 * `google.rpc.Status`): the worker names a rejected field in a `google.rpc.BadRequest` and lists
 * the valid values in an `afa.v1.ValidValues`. Read as data, never parsed from the message.
 */
import type { Metadata } from '@grpc/grpc-js';
import type { FieldProblem } from '../errors.js';
import { ValidValues } from '../gen/afa/v1/afa.js';
import { BadRequest } from '../gen/google/rpc/error_details.js';
import { Status } from '../gen/google/rpc/status.js';

export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
const TYPE_URL_PREFIX = 'type.googleapis.com/';

/** A field violation of the status details: the field's contract path, the problem, the valid values. */
export type FieldViolation = FieldProblem;

function statusOf(metadata: Metadata | undefined): Status | undefined {
  const raw = metadata?.get(STATUS_DETAILS_KEY)[0];
  if (raw === undefined || typeof raw === 'string') return undefined;
  try {
    return Status.decode(raw);
  } catch {
    return undefined; // a trailer that is not a Status (another server's): no details, not a crash
  }
}

/** The first field violation in the status details, with its valid values; undefined when none. */
export function fieldViolation(metadata: Metadata | undefined): FieldViolation | undefined {
  const status = statusOf(metadata);
  if (!status) return undefined;
  let violation: { field: string; description: string } | undefined;
  const valid = new Map<string, string[]>();
  for (const detail of status.details) {
    const type = detail.typeUrl.startsWith(TYPE_URL_PREFIX) ? detail.typeUrl.slice(TYPE_URL_PREFIX.length) : detail.typeUrl;
    if (type === 'google.rpc.BadRequest') violation ??= BadRequest.decode(detail.value).fieldViolations[0];
    else if (type === 'afa.v1.ValidValues') {
      const v = ValidValues.decode(detail.value);
      valid.set(v.field, v.values);
    }
  }
  return violation && { field: violation.field, problem: violation.description, valid: valid.get(violation.field) };
}

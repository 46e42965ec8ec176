/** Exit codes of the CLI, and how a failure becomes one and its message. */
import { AfaError, CancelledError, FieldError } from '../errors.js';

export const EXIT = {
  OK: 0,
  FAILURE: 1,
  BAD_SPEC: 2,
  INTERRUPTED: 130,
} as const;

/** Exit code for an error: 2 for a bad spec or flag (any field error), 130 for an interrupt, 1 otherwise. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof FieldError) return EXIT.BAD_SPEC;
  if (error instanceof CancelledError) return EXIT.INTERRUPTED;
  return EXIT.FAILURE;
}

/** Characters of a message printed: a 50 MB name must not reach the terminal whole. */
export const MAX_MESSAGE_CHARS = 4000;

/** `text` cut to `limit` characters, saying how long it was. */
export function clipText(text: string, limit = MAX_MESSAGE_CHARS): string {
  return text.length <= limit ? text : `${text.slice(0, limit)}... (${text.length} characters in all)`;
}

/**
 * The line a command prints when it fails: the message of one of our errors (it says what to do),
 * the stack of anything else (a bug to report), clipped.
 */
export function failureMessage(error: unknown): string {
  const text = error instanceof AfaError ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
  return clipText(text);
}

/** Prints `afa <command>: <message>` on stderr and returns the exit code for the error. */
export function reportFailure(command: string, error: unknown, interrupted = false): number {
  const code = interrupted ? EXIT.INTERRUPTED : exitCodeFor(error);
  process.stderr.write(`afa ${command}: ${code === EXIT.INTERRUPTED ? 'interrupted' : failureMessage(error)}\n`);
  return code;
}

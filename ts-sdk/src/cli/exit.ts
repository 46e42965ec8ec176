/** Exit codes of the CLI. */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  BAD_SPEC: 2,
  INTERRUPTED: 130,
} as const;

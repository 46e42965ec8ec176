/**
 * The test suite runs every example with AFA_EXAMPLES_QUICK=1, which shrinks steps and widths so
 * each finishes in seconds; run normally, the examples use their real settings.
 */
export const QUICK = process.env.AFA_EXAMPLES_QUICK === '1';

/** `full` normally, `quick` under the test suite. */
export function scaled(full: number, quick: number): number {
  return QUICK ? quick : full;
}

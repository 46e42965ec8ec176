/** Shared by the paper-configuration examples: the inputs they need, checked with clear messages. */
import { existsSync } from 'node:fs';
import { UsageError } from '../ts-sdk/src/index.js';

export function requirePath(variable: string, what: string): string {
  const value = process.env[variable];
  if (!value) {
    throw new UsageError(variable, `set ${variable} to ${what}; this example reproduces the paper's setting and needs it`);
  }
  if (!existsSync(value)) throw new UsageError(variable, `${value} does not exist (${what})`);
  return value;
}

/** What differs between two sweep definitions, as field paths a person can read. */
import { stableStringify } from '../dsl/hash.js';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Paths (`base.schedule`, `space.lr`, `seeds`) whose values differ, at most `depth` levels down. */
export function changedPaths(before: unknown, after: unknown, depth = 2, prefix = ''): string[] {
  if (stableStringify(before) === stableStringify(after)) return [];
  if (depth === 0 || !isObject(before) || !isObject(after)) return [prefix || '(the whole definition)'];
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  return keys.flatMap((k) => changedPaths(before[k], after[k], depth - 1, prefix ? `${prefix}.${k}` : k));
}

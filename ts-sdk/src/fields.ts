/**
 * The one field-checking helper: every run-time check of a spec, a sweep, a CLI flag or an option
 * goes through `Fields`, which names the field by its path as the user wrote it (`schedule[0].lr`,
 * `base.target.labelsPerClass`, `--workers`) and, where there is a closed set, the valid values.
 * It throws a {@link FieldError}: an `InvalidSpecError` for specs and sweeps, a `UsageError` for
 * flags, options and environment variables.
 */
import { FieldError, InvalidSpecError, UsageError } from './errors.js';

type Obj = Record<string, unknown>;
type FieldErrorClass = new (field: string, problem: string, valid?: readonly string[]) => FieldError;

/** Spec floats are doubles in JSON and on the wire, float32 in the model: larger ones become inf there. */
export const FLOAT32_MAX = 3.4028234663852886e38;
/** The largest value a uint32 field of the contract holds. */
export const UINT32_MAX = 0xffff_ffff;

export interface NumberBounds {
  min?: number;
  minExclusive?: number;
  max?: number;
  maxExclusive?: number;
  integer?: boolean;
}

/** A value as a problem quotes it: short, whatever it is. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : String(value);
}

export class Fields {
  constructor(
    /** The field's path; '' is the root. */
    readonly path: string,
    private readonly error: FieldErrorClass = InvalidSpecError,
  ) {}

  /** Checks of a spec or sweep (InvalidSpecError), at `path`. */
  static spec(path = ''): Fields {
    return new Fields(path, InvalidSpecError);
  }

  /** Checks of flags, options and environment variables (UsageError), at `path` (e.g. `--workers`). */
  static usage(path = ''): Fields {
    return new Fields(path, UsageError);
  }

  at(key: string | number): Fields {
    const path = typeof key === 'number' ? `${this.path}[${key}]` : this.path ? `${this.path}.${key}` : key;
    return new Fields(path, this.error);
  }

  /** Throws the field's error. Path and problem are clipped: a refusal quotes what it refuses, it does not repeat 5 MB of it. */
  fail(problem: string, valid?: readonly string[]): never {
    const clip = (text: string, limit: number) => (text.length > limit ? `${text.slice(0, limit)}... (${text.length} characters)` : text);
    throw new this.error(clip(this.path || '(root)', 300), clip(problem, 2000), valid?.slice(0, 100));
  }

  object(value: unknown): Obj {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(`must be an object, got ${describeValue(value)}`);
    return value as Obj;
  }

  string(value: unknown, { nonEmpty = true, maxLength }: { nonEmpty?: boolean; maxLength?: number } = {}): string {
    if (typeof value !== 'string') this.fail(`must be a string, got ${describeValue(value)}`);
    if (nonEmpty && value.length === 0) this.fail('must not be empty');
    if (maxLength !== undefined && value.length > maxLength) this.fail(`must be at most ${maxLength} characters, got ${value.length}`);
    return value;
  }

  oneOf<T extends string>(value: unknown, choices: readonly T[]): T {
    if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
      this.fail(`unknown value ${describeValue(value)}`, choices);
    }
    return value as T;
  }

  /** A finite number within the bounds (and float32's range). Strings of digits count (CLI flags). */
  number(value: unknown, bounds: NumberBounds = {}): number {
    const n = typeof value === 'string' && value.trim() !== '' && this.error === UsageError ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isFinite(n)) this.fail(`must be a finite number, got ${describeValue(value)}`);
    if (Math.abs(n) > FLOAT32_MAX) this.fail(`must be at most ${FLOAT32_MAX.toPrecision(4)} (it becomes float32 in the model), got ${n}`);
    if (bounds.integer && !Number.isInteger(n)) this.fail(`must be a whole number, got ${n}`);
    if (bounds.min !== undefined && n < bounds.min) this.fail(`must be >= ${bounds.min}, got ${n}`);
    if (bounds.minExclusive !== undefined && n <= bounds.minExclusive) this.fail(`must be > ${bounds.minExclusive}, got ${n}`);
    if (bounds.max !== undefined && n > bounds.max) this.fail(`must be <= ${bounds.max}, got ${n}`);
    if (bounds.maxExclusive !== undefined && n >= bounds.maxExclusive) this.fail(`must be < ${bounds.maxExclusive}, got ${n}`);
    return n;
  }

  /** A whole number that fits the contract's uint32, at most `max` where the field has a bound. */
  count(value: unknown, { allowZero = false, max = UINT32_MAX }: { allowZero?: boolean; max?: number } = {}): number {
    return this.number(value, { integer: true, min: allowZero ? 0 : 1, max });
  }

  boolean(value: unknown): boolean {
    if (typeof value !== 'boolean') this.fail(`must be true or false, got ${describeValue(value)}`);
    return value;
  }

  array(value: unknown, { nonEmpty = false, maxLength }: { nonEmpty?: boolean; maxLength?: number } = {}): unknown[] {
    if (!Array.isArray(value)) this.fail(`must be an array, got ${describeValue(value)}`);
    if (nonEmpty && value.length === 0) this.fail('must not be empty');
    if (maxLength !== undefined && value.length > maxLength) this.fail(`must have at most ${maxLength} entries, got ${value.length}`);
    return value;
  }

  optional<T>(obj: object, key: string, check: (f: Fields, v: unknown) => T): T | undefined {
    const value = (obj as Obj)[key];
    return value === undefined ? undefined : check(this.at(key), value);
  }

  /** Refuses keys the object does not have, so a typo is not silently ignored. */
  onlyKeys(obj: Obj, keys: readonly string[]): void {
    for (const key of Object.keys(obj)) {
      if (!keys.includes(key)) this.at(key).fail('is not a field here', keys);
    }
  }
}

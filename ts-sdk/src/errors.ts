/**
 * Typed errors of the SDK. Every error is an {@link AfaError}; `instanceof` works across two copies
 * of the package (a brand symbol from the global registry, not object identity). Transport-free:
 * nothing here knows gRPC; the client translates a call's status into these at its edge
 * (`client/errors.ts`), as Temporal's common errors do.
 */

const brands = new WeakMap<object, symbol>();

function brandOf(cls: object): symbol | undefined {
  return brands.get(cls);
}

/** Marks `cls`'s instances with `also`'s brand too, so `instanceof also` holds for them. */
function alsoBranded(cls: object & { prototype: object }, also: object): void {
  Object.defineProperty(cls.prototype, brandOf(also)!, { value: true, enumerable: false });
}

/** Registers `cls` so `value instanceof cls` holds for any object carrying the class's brand. */
function branded<T extends abstract new (...args: never[]) => Error>(name: string, cls: T): T {
  const brand = Symbol.for(`afa-transfer.error.${name}`);
  brands.set(cls, brand);
  Object.defineProperty(cls.prototype, brand, { value: true, enumerable: false });
  Object.defineProperty(cls.prototype, 'name', { value: name, enumerable: false, writable: true });
  return cls;
}

export class AfaError extends Error {
  static override [Symbol.hasInstance](this: object, value: unknown): boolean {
    const brand = brandOf(this);
    if (brand === undefined) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
branded('AfaError', AfaError);

/** A call in the wrong lifecycle state (e.g. `run` on a stopped worker). */
export class IllegalStateError extends AfaError {}
branded('IllegalStateError', IllegalStateError);

/** The worker process could not be started or did not become healthy in time. */
export class WorkerStartError extends AfaError {
  constructor(
    message: string,
    /** The last lines the worker wrote to stderr. */
    readonly stderrTail: string,
    readonly exitCode?: number | null,
    options?: { cause?: unknown },
  ) {
    super(stderrTail ? `${message}\n--- worker stderr (tail) ---\n${stderrTail}` : message, options);
  }
}
branded('WorkerStartError', WorkerStartError);

/** What a session was doing when its worker died: which session, model, input, layout, stage. */
export interface RunningContext {
  sessionId: string;
  /** The backbone as the worker built it, e.g. "small_resnet width 8 depth 1". */
  backbone: string;
  /** The model's input: channels, height, width. */
  inputShape: readonly number[];
  /** The memory layout its models ran in: "channels_last" or "contiguous". */
  memoryFormat: string;
  /** The stage it was running, or the call it was in (`Evaluate`, ...). */
  doing: string;
}

export function describeRunning(r: RunningContext): string {
  return `while session ${r.sessionId.slice(0, 8)} (${r.backbone}, input ${r.inputShape.join('x')}, ${r.memoryFormat}) was ${r.doing}`;
}

/** The worker process died while a call was in flight; `running` says what it was running, where the SDK knows. */
export class WorkerCrashedError extends AfaError {
  readonly running: RunningContext | undefined;
  constructor(
    readonly summary: string,
    readonly stderrTail: string,
    readonly exitCode: number | null,
    readonly signal: string | null,
    options?: { cause?: unknown; running?: RunningContext },
  ) {
    const first = options?.running ? `${summary} ${describeRunning(options.running)}` : summary;
    super(stderrTail ? `${first}\n--- worker stderr (tail) ---\n${stderrTail}` : first, options);
    this.running = options?.running;
  }

  /** The same crash, saying what the session was running. */
  during(running: RunningContext): WorkerCrashedError {
    return new WorkerCrashedError(this.summary, this.stderrTail, this.exitCode, this.signal, { cause: this.cause, running });
  }
}
branded('WorkerCrashedError', WorkerCrashedError);

/**
 * A call to the worker failed. `status` names the call's status (`NOT_FOUND`, `UNAVAILABLE`, ...:
 * gRPC's names, read by the client at its edge; these classes import nothing from the transport),
 * `details` the worker's message. A subclass per status a caller acts on.
 */
export class WorkerCallError extends AfaError {
  constructor(
    readonly method: string,
    readonly status: string,
    readonly details: string,
    options?: { cause?: unknown },
  ) {
    super(`${method}: ${details || status}`, options);
  }
}
branded('WorkerCallError', WorkerCallError);

/** The fields every field error has: where, what is wrong, and the valid values where there is a closed set. */
export interface FieldProblem {
  /** The field's path, e.g. `schedule[0].regularizer.alpha` (spec) or `stage.optimizer.lr` (worker). */
  readonly field: string;
  readonly problem: string;
  /** The valid values, where the field takes one of a closed set. */
  readonly valid: readonly string[] | undefined;
}

export function formatFieldProblem(field: string, problem: string, valid?: readonly string[]): string {
  return `${field}: ${problem}${valid ? ` (valid: ${valid.join(', ')})` : ''}`;
}

/**
 * A field failed validation. `instanceof FieldError` holds for every field error: a spec the SDK
 * rejected ({@link InvalidSpecError}), a CLI flag or environment variable ({@link UsageError}),
 * and a request the worker rejected ({@link SpecError}).
 */
export class FieldError extends AfaError implements FieldProblem {
  readonly valid: readonly string[] | undefined;
  constructor(
    readonly field: string,
    readonly problem: string,
    valid?: readonly string[],
  ) {
    super(formatFieldProblem(field, problem, valid));
    this.valid = valid;
  }
}
branded('FieldError', FieldError);

/** A spec failed validation in the SDK, before anything ran. */
export class InvalidSpecError extends FieldError {}
branded('InvalidSpecError', InvalidSpecError);

/** A command-line flag, an environment variable or an output location is wrong (`field` names it). */
export class UsageError extends FieldError {}
branded('UsageError', UsageError);

/**
 * The worker rejected a request (INVALID_ARGUMENT). `field` names the offending field (as the
 * spec spells it where the SDK knows the spec, else the contract's path) and `valid` lists the
 * valid values where there is a closed set, both read from the status details.
 */
export class SpecError extends WorkerCallError implements FieldProblem {
  readonly field: string;
  readonly problem: string;
  readonly valid: readonly string[] | undefined;
  constructor(method: string, details: string, violation?: FieldProblem, options?: { cause?: unknown }) {
    super(method, 'INVALID_ARGUMENT', details, options);
    this.field = violation?.field ?? '';
    this.problem = violation?.problem ?? details;
    this.valid = violation?.valid;
    this.message = details;
  }
}
branded('SpecError', SpecError);
alsoBranded(SpecError, FieldError);

/** No such session or stored file on the worker (NOT_FOUND). */
export class NotFoundError extends WorkerCallError {}
branded('NotFoundError', NotFoundError);

/** The session is busy with another stage (FAILED_PRECONDITION). */
export class SessionBusyError extends WorkerCallError {}
branded('SessionBusyError', SessionBusyError);

export class UnauthenticatedError extends WorkerCallError {}
branded('UnauthenticatedError', UnauthenticatedError);

export class DeadlineExceededError extends WorkerCallError {}
branded('DeadlineExceededError', DeadlineExceededError);

/** The worker could not be reached or is shutting down (UNAVAILABLE). */
export class WorkerUnavailableError extends WorkerCallError {}
branded('WorkerUnavailableError', WorkerUnavailableError);

export class ResourceExhaustedError extends WorkerCallError {}
branded('ResourceExhaustedError', ResourceExhaustedError);

/** The worker does not have this call (an older version: UNIMPLEMENTED). */
export class UnimplementedError extends WorkerCallError {}
branded('UnimplementedError', UnimplementedError);

/**
 * Cancelled: the caller aborted (its AbortSignal), a stage ended cancelled, or the worker
 * cancelled the call. `method` names the call where one was in flight.
 */
export class CancelledError extends AfaError {
  constructor(message: string, readonly method?: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
branded('CancelledError', CancelledError);

/** A stage ended without completing (it diverged); `status` is the stage's status. */
export class StageFailedError extends AfaError {
  constructor(
    message: string,
    readonly stage: string,
    readonly status: string,
  ) {
    super(message);
  }
}
branded('StageFailedError', StageFailedError);

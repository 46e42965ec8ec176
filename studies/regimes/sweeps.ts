/**
 * The regime map's definition (issue 29): where does alignment pay? Labels per class {1, 3, 10} x
 * learning rate {0.02, 0.05, 0.1, 0.2} on two of the study's tasks (Fashion-MNIST -> MNIST and
 * Fashion-MNIST {0..4} -> {5..9}), fine-tuning, L2-SP, feature-map, DELTA and AFA at their defaults,
 * 5 seeds: 2 x 3 x 4 x 5 x 5 = 600 trials. Every stage measures its drift from the source.
 */
import { afa, baseline, data, grid, sweep, variants, type DataSpec, type ScheduleStep, type SweepSpec } from '../../ts-sdk/src/index.js';
import { baseExperiment, FULL, TASKS, type Task } from '../reproduce/study.js';

export const LABELS = [1, 3, 10] as const;
export const LRS = [0.02, 0.05, 0.1, 0.2] as const;
export const SEEDS = [0, 1, 2, 3, 4] as const;
/** Validation images per class, whatever the labels: the lr is chosen on it under protocol (b). */
export const VAL_PER_CLASS = 10;
/** L2-SP has no default strength; the pilot's (and the reproduction study's choice on the Fashion split). */
export const L2SP_ALPHA = 1e-2;
export const REFERENCE = 'fine-tune';
export const METHOD_NAMES = ['fine-tune', 'L2-SP', 'feature-map', 'DELTA', 'AFA'] as const;
export type MethodName = (typeof METHOD_NAMES)[number];

const T = FULL.iterations;
const drift = { measureDrift: true } as const;

/** Each method at `lr`, at its default strength (DEFAULT_ALPHA, 0.01x the stability limit; L2-SP at 1e-2). */
export const SCHEDULES: Record<MethodName, (lr: number) => ScheduleStep[]> = {
  'fine-tune': (lr) => baseline.fineTune({ iterations: T, lr, ...drift }),
  'L2-SP': (lr) => baseline.l2sp({ iterations: T, lr, alpha: L2SP_ALPHA, ...drift }),
  'feature-map': (lr) => baseline.featureMap({ iterations: T, lr, ...drift }),
  DELTA: (lr) => baseline.delta({ iterations: T, lr, ...drift }),
  // The paper's schedule: stage II at a tenth of stage I's lr.
  AFA: (lr) => afa({ spatial: { iterations: T / 2, lr, ...drift }, channel: { iterations: T / 2, lr: lr / 10, ...drift } }),
};

/** A variant's label: "AFA lr=0.1". */
export const label = (method: MethodName, lr: number) => `${method} lr=${lr}`;

/** The two tasks of the map (the study's first and third). */
export const REGIME_TASKS: readonly Task[] = [TASKS[0]!, TASKS[2]!];

function targetOf(task: Task): DataSpec {
  const t = task.target;
  // labelsPerClass is set by the sweep (it must be a field of the base to be swept).
  const sampling = { labelsPerClass: LABELS.at(-1)!, valPerClass: VAL_PER_CLASS };
  return t.kind === 'mnist' ? data.mnist(sampling) : data.fashionMnist({ classes: t.classes, testPerClass: t.testPerClass, ...sampling });
}

export function regimeSweep(task: Task): SweepSpec {
  const options: Record<string, Record<string, unknown>> = {};
  for (const method of METHOD_NAMES) for (const lr of LRS) options[label(method, lr)] = { schedule: SCHEDULES[method](lr) };
  const id = `regimes-${task.id.replace(/-10$/, '')}`;
  const base = { ...baseExperiment(task, FULL, id), target: targetOf(task) };
  return sweep({ name: id, base, space: { 'target.labelsPerClass': grid([...LABELS]), method: variants(options) }, seeds: [...SEEDS] });
}

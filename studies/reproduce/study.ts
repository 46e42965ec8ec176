/**
 * The reproduction study's definition: three transfer tasks, nine methods, each method's
 * hyperparameter grid. `examples/reproduce.ts` runs it; this file only says what is run.
 *
 * Every method trains the same number of steps at the same learning rate, 0.05, fixed before the
 * study from short probes (the paper's 0.01 leaves 300 steps short of converged; the investigation
 * sweep measures both 0.01 and 0.1); what differs is the regulariser and its alpha, which is chosen
 * per method and task on validation accuracy (mean over the seeds), never on test.
 */
import { afa, backbone, baseline, data, experiment, fromScratch, l2fe, pretrain, sweep, variants, withHeadWarmup, type DataSpec, type ExperimentSpec, type ScheduleStep, type SourceSpec, type SweepSpec } from '../../ts-sdk/src/index.js';
import { formatValue } from '../../ts-sdk/src/sweep/trials.js';

export interface StudyScale {
  /** Transfer steps per trial (AFA: half per stage). */
  iterations: number;
  /** small_resnet width. */
  width: number;
  /** Source pretraining steps. */
  sourceIterations: number;
  seeds: readonly number[];
  /** Run only each method's quick variant instead of its grid. */
  singleValue: boolean;
  /** Also run the investigation sweep (what else was tried on the first task). */
  investigate: boolean;
}

/** `make reproduce`: under 90 minutes on 2 cores. */
export const FULL: StudyScale = { iterations: 300, width: 16, sourceIterations: 1500, seeds: [0, 1, 2], singleValue: false, investigate: true };
/** `make reproduce-quick`: one seed at each method's default value (~14 min on 2 cores, 6 with cached sources). */
export const QUICK: StudyScale = { ...FULL, seeds: [0], singleValue: true, investigate: false };
/** The test suite's scale: seconds, to prove the pipeline, not the numbers. */
export const TINY: StudyScale = { iterations: 4, width: 8, sourceIterations: 20, seeds: [0], singleValue: true, investigate: true };

/** The learning rate every method trains at (stage II of AFA at a tenth of it, as in the paper). */
export const LR = 0.05;

/** One setting of a method: its label's value part ("alpha=1e-4") and what it sets. */
export interface Variant {
  value: string;
  schedule: (scale: StudyScale) => ScheduleStep[];
  /** @default the task's pretrained source */
  source?: SourceSpec;
}

export interface Method {
  name: string;
  /** The grid, tried in full by `make reproduce`. */
  variants: readonly Variant[];
  /** Index of the variant the quick run uses. */
  quick: number;
}

const its = (s: StudyScale) => ({ iterations: s.iterations });
const alphaGrid = (alphas: readonly number[], schedule: (alpha: number, s: StudyScale) => ScheduleStep[]): Variant[] =>
  alphas.map((alpha) => ({ value: `alpha=${formatValue(alpha)}`, schedule: (s) => schedule(alpha, s) }));

/** AFA's two stages: AST at the study's lr, then ACT at a tenth of it (the paper's ratio). */
export function afaSchedule(spatial: number, channel: number, s: StudyScale, extra: { attentionLrMultiplier?: number } = {}): ScheduleStep[] {
  return afa({
    spatial: { alpha: spatial, iterations: s.iterations / 2, lr: LR, ...extra },
    channel: { alpha: channel, iterations: s.iterations / 2, lr: LR / 10, ...extra },
  });
}

export const METHODS: readonly Method[] = [
  {
    name: 'from scratch',
    variants: [0.05, 0.1].map((lr) => ({ value: `lr=${lr}`, source: fromScratch(), schedule: (s) => baseline.fineTune({ ...its(s), lr }) })),
    quick: 1,
  },
  { name: 'fine-tune', variants: [{ value: '', schedule: (s) => baseline.fineTune({ ...its(s), lr: LR }) }], quick: 0 },
  // Head only: the features never move, so its knob is the lr rather than an alpha.
  { name: 'L2-FE', variants: [0.05, 0.2].map((lr) => ({ value: `lr=${lr}`, schedule: (s) => baseline.l2fe({ ...its(s), lr }) })), quick: 1 },
  { name: 'L2-SP', variants: alphaGrid([1e-3, 1e-2, 1e-1], (alpha, s) => baseline.l2sp({ ...its(s), lr: LR, alpha })), quick: 1 },
  // Feature terms sum over every element of every aligned map (C*H*W per image), hence small alphas.
  { name: 'feature-map', variants: alphaGrid([1e-6, 1e-5, 1e-4], (alpha, s) => baseline.featureMap({ ...its(s), lr: LR, alpha })), quick: 1 },
  // DELTA divides each channel's distance by H*W, so its alphas sit H*W (49..784) above feature-map's.
  { name: 'DELTA', variants: alphaGrid([1e-3, 1e-2, 1e-1], (alpha, s) => baseline.delta({ ...its(s), lr: LR, alpha })), quick: 1 },
  { name: 'AST only', variants: alphaGrid([1e-6, 1e-5, 1e-4], (alpha, s) => baseline.afaSpatial({ ...its(s), lr: LR, alpha })), quick: 1 },
  { name: 'ACT only', variants: alphaGrid([1e-3, 1e-2, 1e-1], (alpha, s) => baseline.afaChannel({ ...its(s), lr: LR, alpha })), quick: 1 },
  {
    name: 'AFA',
    variants: [1e-6, 1e-5].flatMap((spatial) => [1e-3, 1e-2].map((channel) => ({
      value: `AST ${formatValue(spatial)}, ACT ${formatValue(channel)}`,
      schedule: (s: StudyScale) => afaSchedule(spatial, channel, s),
    }))),
    quick: 2,
  },
];

export interface Task {
  id: string;
  title: string;
  /** For chart axes. */
  short: string;
  sourceData: DataSpec;
  target: DataSpec;
}

export const TASKS: readonly Task[] = [
  {
    id: 'fashion-to-mnist-10',
    title: 'Fashion-MNIST -> MNIST, 10 labels/class',
    short: 'F-MNIST -> MNIST, 10/class',
    sourceData: data.fashionMnist({ testPerClass: 100 }),
    target: data.mnist({ labelsPerClass: 10, valPerClass: 10 }),
  },
  {
    id: 'fashion-to-mnist-100',
    title: 'Fashion-MNIST -> MNIST, 100 labels/class',
    short: 'F-MNIST -> MNIST, 100/class',
    sourceData: data.fashionMnist({ testPerClass: 100 }),
    target: data.mnist({ labelsPerClass: 100, valPerClass: 20 }),
  },
  {
    id: 'fashion-0-4-to-5-9-10',
    title: 'Fashion-MNIST {0..4} -> {5..9}, 10 labels/class',
    short: 'F-MNIST 0-4 -> 5-9, 10/class',
    sourceData: data.fashionMnist({ classes: [0, 1, 2, 3, 4], testPerClass: 100 }),
    target: data.fashionMnist({ classes: [5, 6, 7, 8, 9], labelsPerClass: 10, valPerClass: 10, testPerClass: 300 }),
  },
];

/** A variant's label: the method, then its value where it has one ("L2-SP alpha=0.01"). */
export function variantLabel(method: Method, variant: Variant): string {
  return variant.value ? `${method.name} ${variant.value}` : method.name;
}

/** The method a variant label belongs to. */
export function methodOf(label: string): string {
  return METHODS.find((m) => label === m.name || label.startsWith(`${m.name} `))?.name ?? label;
}

export function pretrainedSource(task: Task, scale: StudyScale): SourceSpec {
  return pretrain({ data: task.sourceData, iterations: scale.sourceIterations, batchSize: 128, lr: 0.05 });
}

export function baseExperiment(task: Task, scale: StudyScale, name = task.id): ExperimentSpec {
  return experiment({
    name,
    backbone: backbone.smallResNet({ width: scale.width }),
    source: pretrainedSource(task, scale),
    target: task.target,
    schedule: baseline.fineTune({ ...its(scale), lr: LR }),
  });
}

export function taskSweep(task: Task, scale: StudyScale): SweepSpec {
  const options: Record<string, Record<string, unknown>> = {};
  for (const method of METHODS) {
    for (const variant of scale.singleValue ? [method.variants[method.quick]!] : method.variants) {
      options[variantLabel(method, variant)] = {
        source: variant.source ?? pretrainedSource(task, scale),
        schedule: variant.schedule(scale),
      };
    }
  }
  return sweep({ name: task.id, base: baseExperiment(task, scale), space: { method: variants(options) }, seeds: scale.seeds, metric: 'bestValAccuracy' });
}

/**
 * Where alignment did not beat fine-tuning on Fashion-MNIST -> MNIST (10 labels), what else was
 * tried, each on the same 3 seeds: which layers are aligned, a slower attention (against its
 * collapse), a head warmed up first (so the first steps' gradients through a random head do not
 * drag the features), a longer schedule, and the learning rate. Fine-tuning is rerun as the paired
 * reference.
 */
export function investigationSweep(scale: StudyScale): SweepSpec {
  const task = TASKS[0]!;
  const early = backbone.smallResNet({ width: scale.width, layers: ['layer1.0', 'layer2.0'] });
  const warmup = (rest: ScheduleStep[]): ScheduleStep[] => withHeadWarmup(rest, { iterations: Math.max(1, Math.round(scale.iterations / 3)) });
  const long: StudyScale = { ...scale, iterations: scale.iterations * 2 };
  const act = (s: StudyScale, extra: { attentionLrMultiplier?: number } = {}) =>
    baseline.afaChannel({ ...its(s), lr: LR, alpha: 1e-2, ...extra });
  const options: Record<string, Record<string, unknown>> = {
    'fine-tune (reference)': { schedule: baseline.fineTune({ ...its(scale), lr: LR }) },
    'ACT 1e-2, layers 1-2': { backbone: early, schedule: act(scale) },
    'feature-map 1e-5, layers 1-2': { backbone: early, schedule: baseline.featureMap({ ...its(scale), lr: LR, alpha: 1e-5 }) },
    'AFA (1e-5, 1e-3), layers 1-2': { backbone: early, schedule: afaSchedule(1e-5, 1e-3, scale) },
    'ACT 1e-2, attention lr x0.01': { schedule: act(scale, { attentionLrMultiplier: 0.01 }) },
    'ACT 1e-3, attention lr x0.01': { schedule: baseline.afaChannel({ ...its(scale), lr: LR, alpha: 1e-3, attentionLrMultiplier: 0.01 }) },
    'AFA (1e-5, 1e-3), attention lr x0.01': { schedule: afaSchedule(1e-5, 1e-3, scale, { attentionLrMultiplier: 0.01 }) },
    'head warm-up, then fine-tune': { schedule: warmup(baseline.fineTune({ ...its(scale), lr: LR })) },
    'head warm-up, then ACT 1e-2': { schedule: warmup(act(scale)) },
    'head warm-up, then AFA (1e-5, 1e-3)': { schedule: warmup(afaSchedule(1e-5, 1e-3, scale)) },
    // The same warm-up in front of the non-attentive baselines, so the comparison stays fair.
    'head warm-up, then L2-SP 1e-3': { schedule: warmup(baseline.l2sp({ ...its(scale), lr: LR, alpha: 1e-3 })) },
    'head warm-up, then L2-SP 1e-2': { schedule: warmup(baseline.l2sp({ ...its(scale), lr: LR, alpha: 1e-2 })) },
    'head warm-up, then feature-map 1e-6': { schedule: warmup(baseline.featureMap({ ...its(scale), lr: LR, alpha: 1e-6 })) },
    'head warm-up, then feature-map 1e-5': { schedule: warmup(baseline.featureMap({ ...its(scale), lr: LR, alpha: 1e-5 })) },
    'head warm-up, then ACT 1e-3': { schedule: warmup(baseline.afaChannel({ ...its(scale), lr: LR, alpha: 1e-3 })) },
    'fine-tune, 2x steps': { schedule: baseline.fineTune({ ...its(long), lr: LR }) },
    // The paper's lr: at 300 steps it leaves fine-tuning short of converged, which flatters nothing.
    'fine-tune, lr 0.01': { schedule: baseline.fineTune({ ...its(scale), lr: 0.01 }) },
    'ACT 1e-2, lr 0.01': { schedule: baseline.afaChannel({ ...its(scale), lr: 0.01, alpha: 1e-2 }) },
    'fine-tune, lr 0.1': { schedule: baseline.fineTune({ ...its(scale), lr: 0.1 }) },
    'AFA (1e-5, 1e-3), 2x steps': { schedule: afaSchedule(1e-5, 1e-3, long) },
  };
  return sweep({
    name: `${task.id}-investigation`,
    base: baseExperiment(task, scale, `${task.id}-investigation`),
    space: { variant: variants(options) },
    seeds: scale.seeds,
    metric: 'bestValAccuracy',
  });
}

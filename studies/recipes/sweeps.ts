/**
 * Issue 16's remaining questions, asked on all three tasks of the reproduction study with 5 seeds:
 * does one alignment strength relative to the stability limit, chosen on validation, hold on every
 * task; is any gain of AFA's two stages the method or the restart at a lower lr; does the head
 * warm-up generalise; what does the channel attention attend to at a stable strength, and does a
 * uniform floor on it help. Two sweeps per task: `baselines` (no attention) and `attention`.
 */
import { afa, baseline, lr as lrSchedule, noRegularizer, promoteTargetToSource, relative, stage, sweep, variants, withHeadWarmup, afaSpatial, type ScheduleStep, type SweepSpec } from '../../ts-sdk/src/index.js';
import { baseExperiment, FULL, LR, TASKS, type Task } from '../reproduce/study.js';

export const SEEDS = [0, 1, 2, 3, 4] as const;
/** The stable range found on the first task (nothing blows up below ~1.5x), and below it. */
export const RATIOS = [0.01, 0.03, 0.1, 0.3] as const;
/** AFA is the method that diverged above the limit: it is also run at 1.5x on every task. */
export const AFA_RATIOS = [...RATIOS, 1.5] as const;
export const LOG_EVERY = 3;
export const REFERENCE = 'fine-tune (reference)';

const T = FULL.iterations;
const one = { iterations: T, lr: LR, logEvery: LOG_EVERY };
const half = (lr: number) => ({ iterations: T / 2, lr, logEvery: LOG_EVERY });

/** AFA's two stages at the same ratio: AST at the study's lr, promote, ACT at a tenth of it. */
export const afaAt = (r: number): ScheduleStep[] =>
  afa({ spatial: { alpha: relative(r), ...half(LR) }, channel: { alpha: relative(r), ...half(LR / 10) } });

/** The schedule without the method: the same two halves, restart and promote, no stage-II term. */
export const astThenPlain = (r: number): ScheduleStep[] => [
  stage({ name: 'afa-spatial', regularizer: afaSpatial({ alpha: relative(r) }), lrSchedule: lrSchedule.step(), ...half(LR) }),
  promoteTargetToSource(),
  stage({ name: 'stage-ii-no-alignment', regularizer: noRegularizer(), lrSchedule: lrSchedule.step(), ...half(LR / 10) }),
];

/** Fine-tuning on AFA's schedule: 150 steps at lr, then 150 at lr/10 (each decayed x0.1 at 2/3). */
export const fineTuneRestart = (): ScheduleStep[] => [
  stage({ name: 'fine-tune', regularizer: noRegularizer(), ...half(LR) }),
  stage({ name: 'fine-tune-ii', regularizer: noRegularizer(), ...half(LR / 10) }),
];

export const BASELINE_OPTIONS: Record<string, ScheduleStep[]> = {
  [REFERENCE]: baseline.fineTune(one),
  'fine-tune 150 + 150 at lr/10': fineTuneRestart(),
  'head warm-up, fine-tune': withHeadWarmup(baseline.fineTune(one)),
  ...Object.fromEntries(RATIOS.map((r) => [`feature-map x${r}`, baseline.featureMap({ ...one, alpha: relative(r) })])),
  'feature-map x1.5': baseline.featureMap({ ...one, alpha: relative(1.5) }),
  'head warm-up, feature-map x0.03': withHeadWarmup(baseline.featureMap({ ...one, alpha: relative(0.03) })),
  'DELTA x0.01': baseline.delta({ ...one, alpha: relative(0.01) }),
  'DELTA x0.1': baseline.delta({ ...one, alpha: relative(0.1) }),
};

/** The channel attention's floor compared with plain feature-map alignment at the same ratio. */
export const FLOOR = 0.5;
/** The recipe chosen on the first task (README history): head warm-up, then ACT at alpha 1e-2. */
export const RECIPE_ALPHA = 1e-2;

export const ATTENTION_OPTIONS: Record<string, ScheduleStep[]> = {
  ...Object.fromEntries(RATIOS.map((r) => [`AST x${r}`, baseline.afaSpatial({ ...one, alpha: relative(r) })])),
  ...Object.fromEntries(RATIOS.map((r) => [`ACT x${r}`, baseline.afaChannel({ ...one, alpha: relative(r) })])),
  ...Object.fromEntries(AFA_RATIOS.map((r) => [`AFA x${r}`, afaAt(r)])),
  'AST x0.03, promote, stage II without alignment': astThenPlain(0.03),
  'ACT 1e-2': baseline.afaChannel({ ...one, alpha: RECIPE_ALPHA }),
  'head warm-up, ACT 1e-2': withHeadWarmup(baseline.afaChannel({ ...one, alpha: RECIPE_ALPHA })),
  'head warm-up, ACT x0.03': withHeadWarmup(baseline.afaChannel({ ...one, alpha: relative(0.03) })),
  [`ACT x0.03, floor ${FLOOR}`]: baseline.afaChannel({ ...one, alpha: relative(0.03), uniformFloor: FLOOR }),
  [`ACT x0.3, floor ${FLOOR}`]: baseline.afaChannel({ ...one, alpha: relative(0.3), uniformFloor: FLOOR }),
};

/**
 * Why AFA's stage II diverges above the limit where ACT alone recovers (first task only): is it the
 * attention's lr (lr/10 in stage II, so it cannot move onto the channels that stop the blow-up in
 * time)? Stage II's attention at 10x (= ACT alone's lr), ACT alone's at 0.1x (= stage II's), and ACT
 * alone with a floor (it cannot move all its weight away).
 */
export const STAGE_II_RATIO = 5;
export const STAGE_II_OPTIONS: Record<string, ScheduleStep[]> = {
  [`AFA x${STAGE_II_RATIO}`]: afaAt(STAGE_II_RATIO),
  [`AFA x${STAGE_II_RATIO}, stage II attention lr x10`]: afa({ spatial: { alpha: relative(STAGE_II_RATIO), ...half(LR) },
    channel: { alpha: relative(STAGE_II_RATIO), ...half(LR / 10), attentionLrMultiplier: 10 } }),
  [`ACT x${STAGE_II_RATIO}`]: baseline.afaChannel({ ...one, alpha: relative(STAGE_II_RATIO) }),
  [`ACT x${STAGE_II_RATIO}, attention lr x0.1`]: baseline.afaChannel({ ...one, alpha: relative(STAGE_II_RATIO), attentionLrMultiplier: 0.1 }),
  [`ACT x${STAGE_II_RATIO}, floor ${FLOOR}`]: baseline.afaChannel({ ...one, alpha: relative(STAGE_II_RATIO), uniformFloor: FLOOR }),
};

export type SweepKind = 'baselines' | 'attention' | 'stage-ii';

export const OPTIONS: Record<SweepKind, Record<string, ScheduleStep[]>> = {
  baselines: BASELINE_OPTIONS, attention: ATTENTION_OPTIONS, 'stage-ii': STAGE_II_OPTIONS };

/** The tasks each sweep runs on. */
export const TASKS_OF: Record<SweepKind, readonly Task[]> = { baselines: TASKS, attention: TASKS, 'stage-ii': [TASKS[0]!] };

export function recipeSweep(kind: SweepKind, task: Task, options: Record<string, ScheduleStep[]>): SweepSpec {
  const name = `recipes-${kind}-${task.id}`;
  const space = Object.fromEntries(Object.entries(options).map(([label, schedule]) => [label, { schedule }]));
  return sweep({ name, base: baseExperiment(task, FULL, name), space: { method: variants(space) }, seeds: [...SEEDS], metric: 'bestValAccuracy' });
}


/**
 * Run-time validation of specs that did not pass through the compiler (JSON files, CLI input,
 * sweeps). Every error names the field by its path and, where there is a closed set, the valid values.
 */
import { describeValue as describe, Fields } from '../fields.js';
import { BACKBONE_NAMES } from './backbone.js';
import { DATA_KINDS, type DataKind, type DataSpec } from './data.js';
import type { ExperimentSpec } from './experiment.js';
import { LIMITS } from './limits.js';
import { PRECISIONS } from './precision.js';
import { needsSource, REGULARIZER_KINDS, type RegularizerKind, type RegularizerSpec } from './regularizers.js';
import type { SourceSpec } from './source.js';
import type { ScheduleStep } from './stage.js';

type Obj = Record<string, unknown>;

/** A relative alpha above this many times the stability limit is a typo, not an experiment. */
const MAX_RELATIVE_ALPHA = 1000;

/** A number >= 0, or `relative(x)`: x in (0, 1000] times the stage's stability limit. */
const alpha = (c: Fields, v: unknown) => {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const r = c.object(v);
    c.onlyKeys(r, ['relative']);
    c.at('relative').number(r.relative, { minExclusive: 0, max: MAX_RELATIVE_ALPHA });
    return;
  }
  c.number(v, { min: 0 });
};

function checkBackbone(c: Fields, value: unknown): void {
  const b = c.object(value);
  c.onlyKeys(b, ['name', 'inChannels', 'width', 'depth', 'layers']);
  const name = c.at('name').string(b.name, { maxLength: LIMITS.nameChars });
  if (!/^(torchvision|timm):.+/.test(name)) c.at('name').oneOf(name, [...BACKBONE_NAMES, 'torchvision:NAME', 'timm:NAME']);
  for (const key of ['inChannels', 'width', 'depth'] as const) c.optional(b, key, (cc, v) => cc.count(v, { max: LIMITS[key] }));
  c.optional(b, 'layers', (cc, v) => {
    const layers = cc.array(v);
    if (layers.length > LIMITS.layers) cc.fail(`must list at most ${LIMITS.layers} layers, got ${layers.length}`);
    layers.forEach((l, i) => cc.at(i).string(l, { maxLength: LIMITS.nameChars }));
  });
}

const SAMPLING_KEYS = ['labelsPerClass', 'valPerClass', 'testPerClass', 'classes', 'seed', 'imageSize', 'color', 'augment'];
const IMAGE_SET_KEYS = [...SAMPLING_KEYS, 'resizeMode', 'crop', 'skipBadFiles'];

/** The options of your own images: how they are resized and cropped, bad files skipped. */
const checkImageSet = (c: Fields, d: Obj) => {
  c.optional(d, 'resizeMode', (cc, v) => cc.oneOf(v, ['square', 'shorterSide'] as const));
  c.optional(d, 'crop', (cc, v) => cc.count(v, { max: LIMITS.imageSize }));
  c.optional(d, 'skipBadFiles', (cc, v) => cc.boolean(v));
  if (d.crop !== undefined && d.imageSize !== undefined && (d.crop as number) > (d.imageSize as number)) {
    c.at('crop').fail(`must be at most imageSize (${d.imageSize as number}), got ${d.crop as number}`);
  }
  if (d.crop !== undefined && d.augment) c.at('augment').fail('crop already draws random crops and flips for training: leave augment out');
};

type KindCheck = (c: Fields, value: Obj) => void;

const checkDirectory: KindCheck = (c, d) => {
  c.onlyKeys(d, ['kind', 'directory', ...SAMPLING_KEYS]);
  c.optional(d, 'directory', (cc, v) => cc.string(v, { maxLength: LIMITS.pathChars }));
};

/** Each data set's own fields; every kind of the contract must be here for the SDK to compile. */
const DATA_CHECKS = {
  fashionMnist: checkDirectory,
  mnist: checkDirectory,
  imageFolder: (c, d) => {
    c.onlyKeys(d, ['kind', 'root', ...IMAGE_SET_KEYS]);
    c.at('root').string(d.root, { maxLength: LIMITS.pathChars });
    checkImageSet(c, d);
  },
  packed: (c, d) => {
    c.onlyKeys(d, ['kind', 'sha256', ...IMAGE_SET_KEYS]);
    if (typeof d.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(d.sha256)) c.at('sha256').fail('must be a sha256 in lower-case hex (64 characters)');
    checkImageSet(c, d);
  },
} satisfies Record<DataKind, KindCheck>;

function checkData(c: Fields, value: unknown): DataSpec {
  const d = c.object(value);
  DATA_CHECKS[c.at('kind').oneOf(d.kind, DATA_KINDS)](c, d);
  for (const key of ['labelsPerClass', 'valPerClass', 'testPerClass', 'seed'] as const) {
    c.optional(d, key, (cc, v) => cc.count(v, { allowZero: true }));
  }
  c.optional(d, 'imageSize', (cc, v) => cc.count(v, { max: LIMITS.imageSize }));
  c.optional(d, 'color', (cc, v) => cc.oneOf(v, ['native', 'grayscale', 'rgb'] as const));
  c.optional(d, 'augment', (cc, v) => cc.boolean(v));
  c.optional(d, 'classes', (cc, v) => {
    const items = cc.array(v, { nonEmpty: true });
    if (items.length > LIMITS.classes) cc.fail(`must list at most ${LIMITS.classes} classes, got ${items.length}`);
    const list = items.map((x, i) => cc.at(i).count(x, { allowZero: true }));
    if (new Set(list).size !== list.length) cc.fail('classes repeat');
  });
  return d as unknown as DataSpec;
}

const alphaOnly: KindCheck = (c, r) => {
  c.onlyKeys(r, ['kind', 'alpha']);
  alpha(c.at('alpha'), r.alpha);
};

/** The fields AST and ACT share; `extra` names the kind's own, which the caller checks. */
const attentive = (extra: string[] = []): KindCheck => (c, r) => {
  c.onlyKeys(r, ['kind', 'alpha', 'hidden', ...extra]);
  alpha(c.at('alpha'), r.alpha);
  c.optional(r, 'hidden', (cc, v) => cc.count(v, { max: LIMITS.hidden }));
};

/** Each regulariser's own fields; every kind of the contract must be here for the SDK to compile. */
const REGULARIZER_CHECKS = {
  none: (c, r) => {
    c.onlyKeys(r, ['kind', 'weightDecay']);
    c.at('weightDecay').number(r.weightDecay, { min: 0 });
  },
  l2fe: (c, r) => c.onlyKeys(r, ['kind']),
  l2sp: alphaOnly,
  featureMap: alphaOnly,
  delta: (c, r) => {
    c.onlyKeys(r, ['kind', 'alpha', 'headIterations', 'ablationBatches', 'temperature']);
    alpha(c.at('alpha'), r.alpha);
    c.optional(r, 'headIterations', (cc, v) => cc.count(v, { max: LIMITS.deltaHeadIterations }));
    c.optional(r, 'ablationBatches', (cc, v) => cc.count(v, { max: LIMITS.deltaAblationBatches }));
    c.optional(r, 'temperature', (cc, v) => cc.number(v, { minExclusive: 0 }));
  },
  afaSpatial: attentive(),
  afaChannel: (c, r) => {
    attentive(['uniformFloor'])(c, r);
    c.optional(r, 'uniformFloor', (cc, v) => cc.number(v, { min: 0, max: 1 }));
  },
} satisfies Record<RegularizerKind, KindCheck>;

function checkRegularizer(c: Fields, value: unknown): RegularizerSpec {
  const r = c.object(value);
  REGULARIZER_CHECKS[c.at('kind').oneOf(r.kind, REGULARIZER_KINDS)](c, r);
  return r as unknown as RegularizerSpec;
}

function checkStep(c: Fields, value: unknown): ScheduleStep {
  const s = c.object(value);
  const kind = c.at('kind').oneOf(s.kind, ['stage', 'promoteTargetToSource'] as const);
  if (kind === 'promoteTargetToSource') {
    c.onlyKeys(s, ['kind']);
    return s as unknown as ScheduleStep;
  }
  c.onlyKeys(s, ['kind', 'name', 'regularizer', 'iterations', 'batchSize', 'optimizer', 'lrSchedule', 'headL2', 'evalEvery',
    'logEvery', 'seed', 'restoreBest', 'headLrMultiplier', 'attentionLrMultiplier', 'featureCacheMb', 'featureCache', 'measureDrift',
    'stabilityEstimate']);
  c.at('name').string(s.name, { maxLength: LIMITS.nameChars });
  checkRegularizer(c.at('regularizer'), s.regularizer);
  c.at('iterations').count(s.iterations, { max: LIMITS.iterations });
  c.at('batchSize').count(s.batchSize, { max: LIMITS.batchSize });
  const o = c.at('optimizer').object(s.optimizer);
  const okind = c.at('optimizer').at('kind').oneOf(o.kind, ['sgd', 'adam'] as const);
  c.at('optimizer').at('lr').number(o.lr, { minExclusive: 0 });
  c.at('optimizer').at('weightDecay').number(o.weightDecay, { min: 0 });
  if (okind === 'sgd') {
    c.at('optimizer').onlyKeys(o, ['kind', 'lr', 'momentum', 'weightDecay', 'nesterov']);
    c.at('optimizer').at('momentum').number(o.momentum, { min: 0, maxExclusive: 1 });
    c.at('optimizer').at('nesterov').boolean(o.nesterov);
  } else {
    c.at('optimizer').onlyKeys(o, ['kind', 'lr', 'weightDecay']);
  }
  const l = c.at('lrSchedule').object(s.lrSchedule);
  const lkind = c.at('lrSchedule').at('kind').oneOf(l.kind, ['constant', 'step', 'cosine'] as const);
  if (lkind === 'step') {
    c.at('lrSchedule').at('atFractions').array(l.atFractions).forEach((f, i) =>
      c.at('lrSchedule').at('atFractions').at(i).number(f, { minExclusive: 0, maxExclusive: 1 }));
    c.at('lrSchedule').at('gamma').number(l.gamma, { minExclusive: 0 });
  } else if (lkind === 'cosine') {
    c.at('lrSchedule').at('minFraction').number(l.minFraction, { min: 0, max: 1 });
  }
  c.at('headL2').number(s.headL2, { min: 0 });
  c.at('evalEvery').count(s.evalEvery, { allowZero: true });
  c.at('logEvery').count(s.logEvery, { allowZero: true });
  c.optional(s, 'seed', (cc, v) => cc.count(v, { allowZero: true }));
  c.at('restoreBest').boolean(s.restoreBest);
  c.at('headLrMultiplier').number(s.headLrMultiplier, { minExclusive: 0 });
  c.optional(s, 'attentionLrMultiplier', (cc, v) => cc.number(v, { minExclusive: 0 }));
  c.optional(s, 'featureCacheMb', (cc, v) => cc.count(v, { allowZero: true, max: LIMITS.featureCacheMb }));
  c.optional(s, 'featureCache', (cc, v) => cc.boolean(v));
  c.optional(s, 'measureDrift', (cc, v) => cc.boolean(v));
  c.optional(s, 'stabilityEstimate', (cc, v) => cc.boolean(v));
  const alpha = (s.regularizer as { alpha?: unknown } | undefined)?.alpha;
  if (s.stabilityEstimate === false && typeof alpha === 'object' && alpha !== null) {
    c.at('stabilityEstimate').fail('cannot be false: a relative alpha (regularizer.alpha.relative) needs the stability estimate', ['true', 'undefined']);
  }
  return s as unknown as ScheduleStep;
}

function checkSource(c: Fields, value: unknown): SourceSpec {
  const s = c.object(value);
  const kind = c.at('kind').oneOf(s.kind, ['weights', 'pretrain', 'scratch'] as const);
  if (kind === 'weights') {
    c.onlyKeys(s, ['kind', 'path']);
    c.at('path').string(s.path, { maxLength: LIMITS.pathChars });
  } else if (kind === 'pretrain') {
    c.onlyKeys(s, ['kind', 'data', 'iterations', 'batchSize', 'lr', 'momentum', 'weightDecay', 'lrSchedule', 'seed']);
    checkData(c.at('data'), s.data);
    c.at('iterations').count(s.iterations, { max: LIMITS.iterations });
    c.at('batchSize').count(s.batchSize, { max: LIMITS.batchSize });
    c.at('lr').number(s.lr, { minExclusive: 0 });
    c.at('momentum').number(s.momentum, { min: 0, maxExclusive: 1 });
    c.at('weightDecay').number(s.weightDecay, { min: 0 });
    c.at('lrSchedule').object(s.lrSchedule);
    c.at('seed').count(s.seed, { allowZero: true });
  } else {
    c.onlyKeys(s, ['kind']);
  }
  return s as unknown as SourceSpec;
}

/**
 * Validates a parsed JSON value as an experiment spec (the `experiment()` builder's output shape).
 * `at` is where the spec sits in what the user wrote (`base` in a sweep): errors name fields from there.
 */
export function parseExperiment(value: unknown, at = ''): ExperimentSpec {
  const c = Fields.spec(at);
  const e = c.object(value);
  c.onlyKeys(e, ['version', 'name', 'seed', 'backbone', 'source', 'target', 'schedule', 'device', 'evaluateTest', 'precision']);
  if (e.version !== 1) c.at('version').fail(`unsupported spec version ${describe(e.version)}`, ['1']);
  c.at('name').string(e.name, { maxLength: LIMITS.nameChars });
  c.at('seed').count(e.seed, { allowZero: true });
  checkBackbone(c.at('backbone'), e.backbone);
  const source = checkSource(c.at('source'), e.source);
  checkData(c.at('target'), e.target);
  const schedule = c.at('schedule').array(e.schedule, { nonEmpty: true }).map((s, i) => checkStep(c.at('schedule').at(i), s));
  if (!schedule.some((s) => s.kind === 'stage')) c.at('schedule').fail('has no stage');
  if (source.kind === 'scratch') {
    schedule.forEach((s, i) => {
      if (s.kind === 'stage' && needsSource(s.regularizer.kind)) {
        c.at('schedule').at(i).at('regularizer').fail(`${s.regularizer.kind} aligns to a source model, and source is scratch`,
          REGULARIZER_KINDS.filter((k) => !needsSource(k)));
      }
    });
  }
  c.at('device').string(e.device, { nonEmpty: false, maxLength: LIMITS.nameChars });
  c.at('evaluateTest').boolean(e.evaluateTest);
  c.optional(e, 'precision', (cc, v) => cc.oneOf(v, PRECISIONS));
  if (e.precision === 'auto') delete e.precision;
  return e as unknown as ExperimentSpec;
}

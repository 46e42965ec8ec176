/**
 * A run record read back from disk is data from wherever the file came from: every field a report
 * or a user's analysis reads is checked for its type and bounds before use, so a hand-edited or
 * hostile `result.json` is refused in one line naming the field, and never reaches the page as
 * anything but the text or number it claims to be.
 */
import { Fields } from '../fields.js';
import { LIMITS } from '../dsl/limits.js';
import type { RunRecord } from './result-file.js';

type Obj = Record<string, unknown>;

/** A number, or null where JSON wrote NaN (a metric never measured). */
function metric(f: Fields, value: unknown): void {
  if (value !== null && value !== undefined) f.number(value);
}

function text(f: Fields, value: unknown, maxLength = 1000): string {
  return f.string(value, { nonEmpty: false, maxLength });
}

function bytes(f: Fields, value: unknown, length: number): void {
  if (!(value instanceof Uint8Array)) f.fail('must be base64 bytes ("base64:...")');
  if (value.length !== length) f.fail(`must hold ${length} bytes, got ${value.length}`);
}

function checkSnapshot(f: Fields, value: unknown): void {
  const s = f.object(value);
  text(f.at('split'), s.split, 16);
  const width = f.at('width').count(s.width, { max: LIMITS.imageSize });
  const height = f.at('height').count(s.height, { max: LIMITS.imageSize });
  const channels = f.at('channels').count(s.channels, { max: 4 });
  const images = f.at('images').array(s.images, { maxLength: LIMITS.attentionImages });
  images.forEach((image, i) => {
    const g = f.at('images').at(i);
    const im = g.object(image);
    g.at('label').count(im.label, { allowZero: true, max: LIMITS.classes });
    bytes(g.at('pixels'), im.pixels, width * height * channels);
  });
  f.at('layers').array(s.layers, { maxLength: LIMITS.layers }).forEach((layer, i) => {
    const g = f.at('layers').at(i);
    const l = g.object(layer);
    text(g.at('layer'), l.layer, 200);
    const kind = g.at('kind').oneOf(l.kind, ['spatial', 'channel'] as const);
    g.at('mapHeight').count(l.mapHeight, { allowZero: true, max: LIMITS.imageSize });
    g.at('mapWidth').count(l.mapWidth, { allowZero: true, max: LIMITS.imageSize });
    g.at('entropy').number(l.entropy);
    g.at('maxEntropy').number(l.maxEntropy);
    g.at('peakOverUniform').array(l.peakOverUniform, { maxLength: LIMITS.attentionImages }).forEach((v, j) => g.at('peakOverUniform').at(j).number(v));
    g.at('channel').array(l.channel ?? [], { maxLength: 65_536 }).forEach((v, j) => g.at('channel').at(j).number(v));
    const maps = g.at('spatial').array(l.spatial ?? [], { maxLength: images.length });
    if (kind === 'spatial' && maps.length !== images.length) g.at('spatial').fail(`must hold one map per image (${images.length}), got ${maps.length}`);
    maps.forEach((m, j) => bytes(g.at('spatial').at(j), m, width * height));
  });
}

function checkStage(f: Fields, value: unknown): void {
  const s = f.object(value);
  for (const key of ['name', 'regularizer', 'status']) text(f.at(key), s[key], 200);
  for (const key of ['iterations', 'stepsCompleted', 'bestStep']) f.at(key).count(s[key], { allowZero: true });
  for (const key of ['bestValAccuracy', 'finalValAccuracy', 'finalValLoss', 'finalTrainLoss', 'wallSeconds']) metric(f.at(key), s[key]);
  const history = f.at('history').object(s.history);
  f.at('history').at('steps').array(history.steps, { maxLength: 1_000_000 }).forEach((point, i) => {
    const g = f.at('history').at('steps').at(i);
    const p = g.object(point);
    g.at('step').count(p.step, { allowZero: true });
    for (const key of ['trainAccuracy', 'ceLoss', 'regLoss']) metric(g.at(key), p[key]);
    g.at('attention').array(p.attention ?? [], { maxLength: LIMITS.layers }).forEach((a, j) => {
      const h = g.at('attention').at(j);
      const o = h.object(a);
      text(h.at('layer'), o.layer, 200);
      metric(h.at('entropy'), o.entropy);
      metric(h.at('maxEntropy'), o.maxEntropy);
    });
  });
  f.at('history').at('evals').array(history.evals, { maxLength: 1_000_000 }).forEach((point, i) => {
    const g = f.at('history').at('evals').at(i);
    const p = g.object(point);
    text(g.at('split'), p.split, 16);
    g.at('step').count(p.step, { allowZero: true });
    metric(g.at('accuracy'), p.accuracy);
  });
  f.optional(s, 'attentionSnapshot', checkSnapshot);
}

/** The record, checked; a `UsageError` naming `file` and the field when something is not what it claims. */
export function checkRunRecord(value: unknown, file: string): RunRecord {
  const f = Fields.usage(file);
  const record = f.object(value);
  const spec = f.at('spec').object(record.spec);
  text(f.at('spec').at('backbone').at('name'), f.at('spec').at('backbone').object(spec.backbone).name, 200);
  const g = f.at('result');
  const result = g.object(record.result) as Obj;
  text(g.at('name'), result.name, 200);
  text(g.at('specHash'), result.specHash, 64);
  g.at('seed').count(result.seed, { allowZero: true });
  metric(g.at('bestValAccuracy'), result.bestValAccuracy);
  metric(g.at('testAccuracy'), result.testAccuracy);
  g.optional(result, 'classNames', (h, v) => h.array(v, { maxLength: LIMITS.classes }).forEach((c, i) => text(h.at(i), c, 200)));
  const timings = g.at('timings').object(result.timings);
  for (const key of ['totalSeconds', 'pretrainSeconds']) metric(g.at('timings').at(key), timings[key]);
  g.at('timings').at('sourceCached').boolean(timings.sourceCached);
  g.at('stages').array(result.stages, { maxLength: 256 }).forEach((stage, i) => checkStage(g.at('stages').at(i), stage));
  return value as RunRecord;
}

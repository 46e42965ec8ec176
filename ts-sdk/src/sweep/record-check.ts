/**
 * A results line read back is data from wherever the file came from: each record is checked for
 * the types and bounds of every field the table, the report and a resume read, and its trial id
 * for being a plain name (it names a folder under runs/: `../x` must not). A record that fails is
 * skipped and said, never half used.
 */
import { Fields } from '../fields.js';
import { LIMITS } from '../dsl/limits.js';
import type { TrialRecord } from './store.js';

/** What a trial id may be: a plain name, no separators, no dots (the spec hash, 16 hex digits, here). */
export const TRIAL_ID = /^[A-Za-z0-9_-]{1,64}$/;

const STATUSES = ['completed', 'pruned', 'failed'] as const;

function metric(f: Fields, value: unknown): void {
  if (value !== null) f.number(value);
}

function text(f: Fields, value: unknown, maxLength = 1000): void {
  f.string(value, { nonEmpty: false, maxLength });
}

function checkCurve(f: Fields, value: unknown): void {
  f.array(value, { maxLength: 1_000_000 }).forEach((point, i) => {
    const g = f.at(i);
    const p = g.object(point);
    for (const key of ['stage', 'step', 'globalStep']) g.at(key).count(p[key], { allowZero: true });
    metric(g.at('accuracy'), p.accuracy);
    metric(g.at('loss'), p.loss);
  });
}

function checkAttention(f: Fields, value: unknown): void {
  f.array(value, { maxLength: LIMITS.layers * 256 }).forEach((entry, i) => {
    const g = f.at(i);
    const a = g.object(entry);
    g.at('stage').count(a.stage, { allowZero: true });
    text(g.at('layer'), a.layer, 200);
    metric(g.at('entropy'), a.entropy);
    metric(g.at('maxEntropy'), a.maxEntropy);
  });
}

/** The record, checked (a FieldError naming the field otherwise). */
export function checkTrialRecord(value: unknown, f: Fields): TrialRecord {
  const r = f.object(value);
  const id = f.at('trialId');
  if (typeof r.trialId !== 'string' || !TRIAL_ID.test(r.trialId)) id.fail('must be a plain name of letters, digits, _ and - (it names a folder under runs/)');
  text(f.at('configId'), r.configId, 200);
  f.at('values').object(r.values);
  const labels = f.at('labels').object(r.labels);
  for (const [key, label] of Object.entries(labels)) text(f.at('labels').at(key), label);
  f.at('seed').count(r.seed, { allowZero: true });
  f.at('status').oneOf(r.status, STATUSES);
  const metrics = f.at('metrics').object(r.metrics);
  for (const key of ['bestValAccuracy', 'finalValAccuracy', 'finalValLoss', 'testAccuracy']) metric(f.at('metrics').at(key), metrics[key] ?? null);
  checkCurve(f.at('curve'), r.curve);
  f.optional(r, 'attention', checkAttention);
  text(f.at('specHash'), r.specHash, 64);
  const spec = f.at('spec').object(r.spec);
  f.at('spec').at('schedule').array(spec.schedule, { maxLength: 256 }).forEach((stage, i) => {
    const s = f.at('spec').at('schedule').at(i).object(stage);
    if (s.name !== undefined) text(f.at('spec').at('schedule').at(i).at('name'), s.name, 200);
  });
  f.optional(r, 'error', (g, v) => text(g, v, 1_000_000));
  f.at('attempts').count(r.attempts, { allowZero: true });
  text(f.at('worker'), r.worker, 200);
  for (const key of ['node', 'dataSha256', 'finishedAt']) f.optional(r, key, (g, v) => text(g, v, 300));
  metric(f.at('wallSeconds'), r.wallSeconds);
  return value as TrialRecord;
}

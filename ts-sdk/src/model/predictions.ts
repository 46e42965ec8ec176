/** A prediction as both the worker's Predict and Node inference answer it. */
import type { PredictResponse } from '../gen/afa/v1/afa.js';

export interface TopClass {
  readonly label: number;
  readonly name: string;
  readonly probability: number;
}

export interface Prediction {
  /** The most probable class, its name and probability (the first of `top`). */
  readonly label: number;
  readonly name: string;
  readonly probability: number;
  /** The top-k classes, best first. */
  readonly top: readonly TopClass[];
  readonly logits: readonly number[];
  readonly probabilities: readonly number[];
}

export const DEFAULT_TOP_K = 5;

function prediction(top: TopClass[], logits: readonly number[], probabilities: readonly number[]): Prediction {
  return { label: top[0]!.label, name: top[0]!.name, probability: top[0]!.probability, top, logits, probabilities };
}

/** The worker's answer as typed predictions. */
export function fromPredictResponse(response: PredictResponse): Prediction[] {
  return response.predictions.map((p) => prediction(p.top.map((t) => ({ label: t.label, name: t.name, probability: t.probability })),
    p.logits, p.probabilities));
}

/** Predictions from a (N x classes) block of logits: softmax, then the top-k (ties: the lower label first). */
export function fromLogits(logits: Float32Array, n: number, classNames: readonly string[], topK = DEFAULT_TOP_K): Prediction[] {
  const k = Math.min(Math.max(1, topK), classNames.length);
  const c = classNames.length;
  return Array.from({ length: n }, (_, i) => {
    const row = Array.from(logits.subarray(i * c, (i + 1) * c));
    const max = Math.max(...row);
    const exp = row.map((v) => Math.exp(v - max));
    const sum = exp.reduce((a, b) => a + b, 0);
    const probabilities = exp.map((e) => e / sum);
    const order = probabilities.map((p, label) => ({ p, label })).sort((a, b) => b.p - a.p || a.label - b.label).slice(0, k);
    return prediction(order.map(({ p, label }) => ({ label, name: classNames[label]!, probability: p })), row, probabilities);
  });
}

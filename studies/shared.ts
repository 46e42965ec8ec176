/**
 * What the studies share (studies/reproduce, stability, recipes, regimes): the facts each reads from
 * a trial's run record, the paired difference to a reference on the same seeds, and the blow-up
 * criterion. One definition each, so the tables of all studies mean the same by the same words.
 */
import { meanStd } from '../ts-sdk/src/sweep/index.js';

export interface ChannelFacts {
  layer: string;
  /** Attention weight per channel, averaged over the snapshot's images. */
  weight: number[];
  /** ||F_t,j - F_s,j||^2 / HW per channel on the same images, at the end of the stage. */
  discrepancy: number[];
}

export interface StageFacts {
  name: string;
  status: string;
  alphaRatio?: number;
  lambdaMax?: number;
  alpha?: number;
  /** alpha x Omega at the first logged step, its peak, the step of the peak, and the last value. */
  first?: number;
  peak?: number;
  peakStep?: number;
  last?: number;
  channels?: ChannelFacts[];
  /** The target's drift from the original source at the end of the stage (stages with measureDrift). */
  drift?: DriftFacts;
}

export interface DriftFacts {
  /** ||w - w_source|| / ||w_source|| over the backbone. */
  weightRelative: number;
  /** The aligned layers' feature discrepancy over the source's activation, mean over layers. */
  featureRelative: number;
}

export interface TrialFacts {
  trialId: string;
  stages: StageFacts[];
}

/** A run record's `result` as far as the studies read it. */
export interface RunResultFacts {
  stages: Array<{
    name: string;
    status: string;
    stability?: { alphaRatio: number; lambdaMax: number; alpha: number };
    history: { steps: Array<{ step: number; regLoss: number }> };
    attentionSnapshot?: { layers: Array<{ layer: string; kind: string; channel: number[]; channelDiscrepancy?: number[] }> };
    drift?: { weightDistanceRelative: number; layers: Array<{ relative: number }> };
  }>;
}

/** Each stage's stability estimate, alpha x Omega over its logged steps, and its channel attention against discrepancy. */
export function stageFacts(trialId: string, result: RunResultFacts): TrialFacts {
  return {
    trialId,
    stages: result.stages.map((s) => {
      const steps = s.history.steps.filter((p) => Number.isFinite(p.regLoss));
      const peak = steps.reduce<{ step: number; regLoss: number } | undefined>((best, p) => (!best || p.regLoss > best.regLoss ? p : best), undefined);
      const channels = s.attentionSnapshot?.layers.filter((l) => l.kind === 'channel' && l.channelDiscrepancy?.length)
        .map((l) => ({ layer: l.layer, weight: l.channel, discrepancy: l.channelDiscrepancy! }));
      return {
        name: s.name,
        status: s.status,
        ...(s.stability ? { alphaRatio: s.stability.alphaRatio, lambdaMax: s.stability.lambdaMax, alpha: s.stability.alpha } : {}),
        ...(s.stability && steps.length ? { first: steps[0]!.regLoss, peak: peak!.regLoss, peakStep: peak!.step, last: steps.at(-1)!.regLoss } : {}),
        ...(channels?.length ? { channels } : {}),
        ...(s.drift ? { drift: { weightRelative: s.drift.weightDistanceRelative,
          featureRelative: s.drift.layers.reduce((a, l) => a + l.relative, 0) / Math.max(1, s.drift.layers.length) } } : {}),
      };
    }),
  };
}

/** Test accuracy (or any per-seed value) minus the reference's on the same seeds; null without a common seed. */
export function pairedDifference(values: ReadonlyMap<number, number>, reference: ReadonlyMap<number, number> | undefined):
  { mean: number; std: number; n: number } | null {
  if (!reference) return null;
  const diffs = [...values].filter(([seed]) => reference.has(seed)).map(([seed, v]) => v - reference.get(seed)!);
  if (!diffs.length) return null;
  return { ...meanStd(diffs), n: diffs.length };
}

/** How many of a label's trials blew up, and whether the label did. */
export interface BlowUp {
  blew: boolean;
  /** Trials with a stage that ended diverged, or whose aligning stage logged no finite alpha x Omega. */
  diverged: number;
  /** Completed trials whose validation ended below half its best. */
  collapsed: number;
}

/**
 * Blown up: a stage ended diverged (non-finite loss), validation ended below half its best, or
 * alpha x Omega at the first logged step was more than 10x higher per unit of ratio than at the
 * method's smallest ratio (`earlyGrowth`). Omega starts at 0 (the target is a copy of the source)
 * and, while the step is stable, grows with the drift the cross-entropy causes, which a stronger
 * pull only restrains: per unit of alpha it can only fall. An unstable step instead amplifies
 * Omega's own direction from the first steps (the catapult): that is what the early value shows.
 * The peak is no signature: at small ratios it comes late, from slow drift.
 */
export function blowUp(trials: ReadonlyArray<{ finalValAccuracy: number; bestValAccuracy: number; stages: readonly StageFacts[] }>,
  earlyGrowth: number): BlowUp {
  const diverged = trials.filter((t) => t.stages.some((s) => s.status === 'diverged' || (s.alphaRatio !== undefined && !Number.isFinite(s.first ?? NaN)))).length;
  const collapsed = trials.filter((t) => t.finalValAccuracy < 0.5 * t.bestValAccuracy).length;
  return { blew: diverged + collapsed > 0 || earlyGrowth > 10, diverged, collapsed };
}

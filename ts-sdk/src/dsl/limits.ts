/**
 * Upper bounds on every count and size a spec can carry, the same as the worker's
 * (`python-worker/afa_worker/limits.py`; a contract test compares the two): a value past them is
 * refused before anything is sent, naming the field. Counts without a bound of their own must fit
 * the contract's uint32.
 */
export const LIMITS = {
  iterations: 100_000_000,
  batchSize: 4096,
  evalBatchSize: 4096,
  hidden: 4096,
  deltaHeadIterations: 100_000,
  deltaAblationBatches: 64,
  featureCacheMb: 2 ** 20,
  width: 1024,
  depth: 64,
  inChannels: 64,
  imageSize: 1024,
  classes: 100_000,
  layers: 256,
  attentionImages: 16,
  weightsBytes: 8 * 2 ** 30,
  datasetBytes: 8 * 2 ** 30,
  datasetImages: 2_000_000,
  /** Characters of a name: backbone, layer, stage, experiment. */
  nameChars: 200,
  /** Characters of a path on the worker's machine (Linux's PATH_MAX). */
  pathChars: 4096,
} as const;

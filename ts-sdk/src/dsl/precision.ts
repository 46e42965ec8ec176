/**
 * The `precision` of an experiment: the arithmetic of a run, resolved by the worker per device. `auto`: bf16 autocast on CUDA; on CPU fp32 training, with the frozen
 * source's forward in bf16 where the CPU has bf16 units (AVX512-BF16, AMX). `fp32`: fp32 throughout.
 * `bf16`: bf16 autocast for the trained network and the source on any device (on CPUs with bf16
 * units a fine-tuning step ran ~1.45x faster here; slower where bf16 is emulated).
 */
export type Precision = 'auto' | 'fp32' | 'bf16';
export const PRECISIONS: readonly Precision[] = ['auto', 'fp32', 'bf16'];

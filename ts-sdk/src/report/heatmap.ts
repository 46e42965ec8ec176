/**
 * Attention heat maps over their input images, as RGB arrays: for reports (PNG) and TensorBoard.
 * The colour map runs dark blue (no weight) through red to yellow (the image's peak); the weight
 * also sets the opacity, so unattended regions show the image itself.
 */
import type { AttentionImage } from '../run/attention.js';

/** [position 0..1, r, g, b] stops of the colour map. */
const STOPS: ReadonlyArray<readonly [number, number, number, number]> = [
  [0, 12, 7, 134], [0.35, 126, 3, 168], [0.6, 204, 71, 120], [0.8, 248, 149, 64], [1, 240, 249, 33],
];

export function heatColor(value: number): [number, number, number] {
  const v = Math.min(1, Math.max(0, value));
  for (let i = 1; i < STOPS.length; i++) {
    const [p1, r1, g1, b1] = STOPS[i]!;
    const [p0, r0, g0, b0] = STOPS[i - 1]!;
    if (v <= p1) {
      const t = (v - p0) / (p1 - p0);
      return [Math.round(r0 + t * (r1 - r0)), Math.round(g0 + t * (g1 - g0)), Math.round(b0 + t * (b1 - b0))];
    }
  }
  return [STOPS.at(-1)![1], STOPS.at(-1)![2], STOPS.at(-1)![3]];
}

/** The image as RGB (grey images repeated over the three channels). */
export function imageRgb(image: AttentionImage, width: number, height: number, channels: number): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) out[i * 3 + c] = image.pixels[i * channels + (channels === 1 ? 0 : c)]!;
  }
  return out;
}

/** The heat map blended over the image: opacity 0.25 + 0.6 x weight. */
export function overlayRgb(base: Uint8Array, heat: Uint8Array): Uint8Array {
  const out = new Uint8Array(base.length);
  for (let i = 0; i < heat.length; i++) {
    const w = heat[i]! / 255;
    const [r, g, b] = heatColor(w);
    const a = 0.25 + 0.6 * w;
    out[i * 3] = Math.round((1 - a) * base[i * 3]! + a * r);
    out[i * 3 + 1] = Math.round((1 - a) * base[i * 3 + 1]! + a * g);
    out[i * 3 + 2] = Math.round((1 - a) * base[i * 3 + 2]! + a * b);
  }
  return out;
}

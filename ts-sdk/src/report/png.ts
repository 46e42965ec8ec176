/** PNG images for inline `data:` URLs in reports. */
import { encodePng } from '../png.js';

/** An 8-bit RGB PNG of `rgb` (width x height x 3, row-major). */
export function encodeRgbPng(width: number, height: number, rgb: Uint8Array): Buffer {
  return encodePng(width, height, rgb, 3);
}

export function pngDataUrl(width: number, height: number, rgb: Uint8Array): string {
  return `data:image/png;base64,${encodeRgbPng(width, height, rgb).toString('base64')}`;
}

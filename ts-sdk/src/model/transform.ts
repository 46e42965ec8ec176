/**
 * A model card's eval transform (proto ImageTransform) in Node, for inference without Python: the
 * same steps as the worker's (python-worker/afa_worker/preprocess.py): colour -> resize -> center
 * crop -> (x / 255 - mean) / std, channels first. Pillow's antialiased bilinear resize
 * ("pil_bilinear") is reproduced exactly (its fixed-point arithmetic, Resample.c), and so is its
 * RGB -> L conversion; torch's bilinear interpolation ("torch_bilinear") is reproduced to within a
 * rounding step of a pixel value. test/model-out.test.ts checks both against the worker.
 */
import type { ImageTransform } from '../gen/afa/v1/afa.js';
import type { RawImage } from './images.js';

/** A uint8 image, height x width x channels, row-major. */
interface Pixels {
  data: Uint8Array;
  height: number;
  width: number;
  channels: number;
}

/** To the card's colour: Pillow's L = (19595 R + 38470 G + 7471 B + 2^15) >> 16, grey repeated for RGB, alpha dropped. */
export function convertColor(image: RawImage, color: string): Pixels {
  const { pixels, height, width, channels } = image;
  const n = height * width;
  const out = color === 'rgb' ? 3 : 1;
  const data = new Uint8Array(n * out);
  for (let i = 0; i < n; i++) {
    const p = i * channels;
    if (out === 1) {
      data[i] = channels === 1 ? pixels[p]! : (pixels[p]! * 19595 + pixels[p + 1]! * 38470 + pixels[p + 2]! * 7471 + 0x8000) >> 16;
    } else if (channels === 1) {
      data[i * 3] = data[i * 3 + 1] = data[i * 3 + 2] = pixels[p]!;
    } else {
      data[i * 3] = pixels[p]!;
      data[i * 3 + 1] = pixels[p + 1]!;
      data[i * 3 + 2] = pixels[p + 2]!;
    }
  }
  return { data, height, width, channels: out };
}

const PRECISION_BITS = 32 - 8 - 2;

/** Pillow's coefficients of one axis (precompute_coeffs + normalize_coeffs_8bpc, bilinear filter). */
function pilCoefficients(inSize: number, outSize: number): { bounds: Int32Array; kk: Float64Array; ksize: number } {
  const scale = inSize / outSize;
  const filterscale = Math.max(1, scale);
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1 ? 1 - t : 0;
      kk[xx * ksize + x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? kk[xx * ksize + x]! / ww : kk[xx * ksize + x]!;
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * (1 << PRECISION_BITS)) : Math.trunc(0.5 + k * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, kk, ksize };
}

const clip8 = (v: number) => (v >= (1 << PRECISION_BITS) * 256 ? 255 : v <= 0 ? 0 : Math.floor(v / (1 << PRECISION_BITS)));

/** Pillow's Image.resize(size, BILINEAR) on 8-bit images: the horizontal pass, then the vertical one, each rounded to uint8. */
export function pilBilinear(image: Pixels, width: number, height: number): Pixels {
  let current = image;
  const c = image.channels;
  if (width !== image.width) {
    const { bounds, kk, ksize } = pilCoefficients(image.width, width);
    const data = new Uint8Array(current.height * width * c);
    for (let y = 0; y < current.height; y++) {
      for (let xx = 0; xx < width; xx++) {
        const xmin = bounds[xx * 2]!;
        const xmax = bounds[xx * 2 + 1]!;
        for (let ch = 0; ch < c; ch++) {
          let ss = 1 << (PRECISION_BITS - 1);
          for (let x = 0; x < xmax; x++) ss += current.data[(y * current.width + x + xmin) * c + ch]! * kk[xx * ksize + x]!;
          data[(y * width + xx) * c + ch] = clip8(ss);
        }
      }
    }
    current = { data, height: current.height, width, channels: c };
  }
  if (height !== image.height) {
    const { bounds, kk, ksize } = pilCoefficients(image.height, height);
    const data = new Uint8Array(height * current.width * c);
    for (let yy = 0; yy < height; yy++) {
      const ymin = bounds[yy * 2]!;
      const ymax = bounds[yy * 2 + 1]!;
      for (let x = 0; x < current.width; x++) {
        for (let ch = 0; ch < c; ch++) {
          let ss = 1 << (PRECISION_BITS - 1);
          for (let y = 0; y < ymax; y++) ss += current.data[((y + ymin) * current.width + x) * c + ch]! * kk[yy * ksize + y]!;
          data[(yy * current.width + x) * c + ch] = clip8(ss);
        }
      }
    }
    current = { data, height, width: current.width, channels: c };
  }
  return current;
}

/** torch.nn.functional.interpolate(mode='bilinear', align_corners=False) on uint8 values, rounded half to even. */
export function torchBilinear(image: Pixels, width: number, height: number): Pixels {
  if (width === image.width && height === image.height) return image;
  const c = image.channels;
  const source = (i: number, inSize: number, outSize: number) => {
    const real = Math.max(0, Math.fround(Math.fround(inSize / outSize) * Math.fround(i + 0.5)) - 0.5);
    const i0 = Math.min(Math.floor(real), inSize - 1);
    return { i0, i1: Math.min(i0 + 1, inSize - 1), l: Math.min(Math.max(real - i0, 0), 1) };
  };
  const data = new Uint8Array(height * width * c);
  for (let y = 0; y < height; y++) {
    const sy = source(y, image.height, height);
    for (let x = 0; x < width; x++) {
      const sx = source(x, image.width, width);
      for (let ch = 0; ch < c; ch++) {
        const at = (yy: number, xx: number) => image.data[(yy * image.width + xx) * c + ch]!;
        const v = (1 - sy.l) * ((1 - sx.l) * at(sy.i0, sx.i0) + sx.l * at(sy.i0, sx.i1)) + sy.l * ((1 - sx.l) * at(sy.i1, sx.i0) + sx.l * at(sy.i1, sx.i1));
        const floor = Math.floor(v);
        const rounded = v - floor === 0.5 ? (floor % 2 === 0 ? floor : floor + 1) : Math.round(v);
        data[(y * width + x) * c + ch] = Math.min(255, Math.max(0, rounded));
      }
    }
  }
  return { data, height, width, channels: c };
}

/** The image cut to `width` x `height` around its center (Python's round for the offsets). */
export function centerCrop(image: Pixels, width: number, height: number): Pixels {
  if (image.width === width && image.height === height) return image;
  if (image.width < width || image.height < height) {
    throw new RangeError(`resized to ${image.height}x${image.width}, smaller than the ${height}x${width} input`);
  }
  const roundHalfEven = (v: number) => (v - Math.floor(v) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));
  const top = roundHalfEven((image.height - height) / 2);
  const left = roundHalfEven((image.width - width) / 2);
  const c = image.channels;
  const data = new Uint8Array(height * width * c);
  for (let y = 0; y < height; y++) data.set(image.data.subarray(((y + top) * image.width + left) * c, ((y + top) * image.width + left + width) * c), y * width * c);
  return { data, height, width, channels: c };
}

/** The uint8 image the model sees, before normalisation: colour, resize, crop (as the worker's `to_uint8`). */
export function toModelPixels(image: RawImage, t: ImageTransform): Pixels {
  const colored = convertColor(image, t.color);
  const resample = t.resample === 'torch_bilinear' ? torchBilinear : pilBilinear;
  if (t.resize === 'shorter_side') {
    // The shorter side to the target, the other center-cropped to it, as the training images were decoded.
    const scale = t.resizeHeight / Math.min(colored.width, colored.height);
    const pyRound = (v: number) => (v - Math.floor(v) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));
    const scaled = resample(colored, Math.max(1, pyRound(colored.width * scale)), Math.max(1, pyRound(colored.height * scale)));
    return centerCrop(centerCrop(scaled, t.resizeWidth, t.resizeHeight), t.width, t.height);
  }
  return centerCrop(resample(colored, t.resizeWidth, t.resizeHeight), t.width, t.height);
}

/** Per channel, the normalised float32 value of each uint8 value: fround((fround(v / 255) - mean) / std), as torch computes it. */
function lookup(t: ImageTransform): Float32Array[] {
  return t.mean.map((mean, c) => {
    const m = Math.fround(mean);
    const s = Math.fround(t.std[c]!);
    const table = new Float32Array(256);
    for (let v = 0; v < 256; v++) table[v] = Math.fround(Math.fround(Math.fround(v / 255) - m) / s);
    return table;
  });
}

/** A batch of images as the model's float32 input (N, C, H, W). */
export function toModelInput(images: readonly RawImage[], t: ImageTransform): Float32Array {
  const tables = lookup(t);
  const c = t.color === 'rgb' ? 3 : 1;
  const plane = t.height * t.width;
  const out = new Float32Array(images.length * c * plane);
  images.forEach((image, n) => {
    const px = toModelPixels(image, t);
    for (let ch = 0; ch < c; ch++) {
      const table = tables[ch]!;
      const base = (n * c + ch) * plane;
      for (let i = 0; i < plane; i++) out[base + i] = table[px.data[i * c + ch]!]!;
    }
  });
  return out;
}

/**
 * A drawing -> a 28 x 28 MNIST-style digit (white on black, 20 x 20 box, centred by centre of mass).
 *
 * A step-by-step copy of gray_to_mnist_style in keras_pairs/images.py (float64 throughout,
 * area-average resampling, halves rounded up), so the page feeds the model what `predict.py` would
 * feed it for the same picture; tests/test_serve.py checks the two agree within one grey level.
 */

/** Canvas RGBA bytes -> grey levels, with Pillow's convert("L") formula (ITU-R 601-2 luma). */
export function rgbaToGray(rgba) {
  const gray = new Float64Array(rgba.length / 4);
  for (let i = 0; i < gray.length; i++) {
    gray[i] = (rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 + 0x8000) >> 16;
  }
  return gray;
}

/** Grey levels 0..255 (row-major, width x height) -> Uint8Array(784), row-major 28 x 28. */
export function toMnistStyle(grayLevels, width, height) {
  let gray = Float64Array.from(grayLevels);
  if (median(gray) > 127) gray = gray.map((v) => 255 - v); // dark on light: MNIST is white on black
  if (width === 28 && height === 28) return roundHalfUp(gray); // already MNIST-sized: unchanged
  const background = median(gray);
  gray = gray.map((v) => Math.max(v - background, 0));
  const max = gray.reduce((m, v) => Math.max(m, v), 0);
  if (max <= 0) return new Uint8Array(784);
  const gain = 255 / max;
  gray = gray.map((v) => v * gain);

  let [top, bottom, left, right] = [height, -1, width, -1];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (gray[y * width + x] > 0.1 * 255) {
        top = Math.min(top, y); bottom = Math.max(bottom, y);
        left = Math.min(left, x); right = Math.max(right, x);
      }
    }
  }
  const [h, w] = [bottom - top + 1, right - left + 1];
  const scale = 20 / Math.max(h, w);
  const [newH, newW] = [Math.max(1, halfUp(h * scale)), Math.max(1, halfUp(w * scale))];
  const rowWeights = areaWeights(h, newH);
  const colWeights = areaWeights(w, newW);

  // small = rowWeights @ crop @ colWeights^T, in that order (as numpy evaluates it).
  const rows = new Float64Array(newH * w);
  for (let i = 0; i < newH; i++) {
    for (let x = 0; x < w; x++) {
      let sum = 0;
      for (let j = 0; j < h; j++) sum += rowWeights[i][j] * gray[(top + j) * width + left + x];
      rows[i * w + x] = sum;
    }
  }
  const small = new Float64Array(newH * newW);
  for (let i = 0; i < newH; i++) {
    for (let k = 0; k < newW; k++) {
      let sum = 0;
      for (let x = 0; x < w; x++) sum += rows[i * w + x] * colWeights[k][x];
      small[i * newW + k] = sum;
    }
  }
  const smallBytes = roundHalfUp(small);
  const canvas = new Uint8Array(784);
  const [y0, x0] = [Math.floor((28 - newH) / 2), Math.floor((28 - newW) / 2)];
  for (let i = 0; i < newH; i++) {
    for (let k = 0; k < newW; k++) canvas[(y0 + i) * 28 + x0 + k] = smallBytes[i * newW + k];
  }
  return centreByMass(canvas);
}

/** (dst x src) area-average weights: output i averages input [i*src/dst, (i+1)*src/dst). */
function areaWeights(src, dst) {
  const step = src / dst;
  const weights = [];
  for (let i = 0; i < dst; i++) {
    const row = new Float64Array(src);
    const [low, high] = [i * step, (i + 1) * step];
    for (let j = Math.floor(low); j < Math.min(src, Math.ceil(high)); j++) {
      row[j] = (Math.min(high, j + 1) - Math.max(low, j)) / step;
    }
    weights.push(row);
  }
  return weights;
}

/** Shifts the integer image so its centre of mass sits at (13.5, 13.5); ink shifted out is dropped. */
function centreByMass(canvas) {
  let [total, sumY, sumX] = [0, 0, 0];
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      const v = canvas[y * 28 + x];
      total += v; sumY += y * v; sumX += x * v;
    }
  }
  if (total === 0) return canvas;
  const dy = halfUp(13.5 - sumY / total);
  const dx = halfUp(13.5 - sumX / total);
  const shifted = new Uint8Array(784);
  for (let y = Math.max(dy, 0); y < 28 + Math.min(dy, 0); y++) {
    for (let x = Math.max(dx, 0); x < 28 + Math.min(dx, 0); x++) {
      shifted[y * 28 + x] = canvas[(y - dy) * 28 + x - dx];
    }
  }
  return shifted;
}

/** numpy's median (the mean of the two middle values for an even count), by quickselect: sorting
 * a pad's 78,400 values on every stroke would take most of a frame. */
function median(values) {
  const a = Float64Array.from(values);
  const mid = a.length >> 1;
  const upper = select(a, mid);
  if (a.length % 2) return upper;
  let lower = -Infinity;
  for (let i = 0; i < mid; i++) lower = Math.max(lower, a[i]); // select left the smaller ones there
  return (lower + upper) / 2;
}

/** Hoare's quickselect: reorders a so that a[k] is its k-th smallest value, smaller values before it. */
function select(a, k) {
  let [low, high] = [0, a.length - 1];
  while (low < high) {
    const pivot = a[(low + high) >> 1];
    let [i, j] = [low, high];
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i]; a[i] = a[j]; a[j] = t;
        i++; j--;
      }
    }
    if (k <= j) high = j;
    else if (k >= i) low = i;
    else break; // a[j + 1 .. i - 1] all equal the pivot, a[k] among them
  }
  return a[k];
}

const halfUp = (x) => Math.floor(x + 0.5);

function roundHalfUp(values) {
  return Uint8Array.from(values, (v) => Math.min(255, Math.max(0, Math.floor(v + 0.5))));
}

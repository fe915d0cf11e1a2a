/**
 * The page: two pads (or sample digits) -> the model in this browser -> decision, P(A <= B) and each
 * digit's ten class probabilities, updated while drawing.
 *
 * For drivers and tests: `?a=N&b=M` puts sample digits N and M on the pads and runs at load;
 * document.body.dataset.result holds the last result as JSON {a_le_b, prob_a_le_b, digit_a, digit_b},
 * dataset.pixels the 28 x 28 digits it was computed from ({digit_a: [784], digit_b: [784]}), and
 * dataset.status is "loading", "busy", "ready" or "error".
 */
import { Pad } from './pad.js';
import { loadModel } from './model.js';
import { rgbaToGray, toMnistStyle } from './mnist_style.js';

const body = document.body;
const $ = (id) => document.getElementById(id);
let model = null;
let dirty = false;
let loop = null;

const pads = { a: new Pad($('pad-a'), changed), b: new Pad($('pad-b'), changed) };
window.kerasPairs = { toMnistStyle, rgbaToGray, padGray: (name) => pads[name].gray() };

main().catch(fail);

async function main() {
  body.dataset.status = 'loading';
  const [info, samples] = await Promise.all(
    ['/model/info.json', '/static/samples.json'].map((url) => fetch(url).then((r) => r.json())));
  describe(info);
  for (const name of ['a', 'b']) {
    $(`clear-${name}`).addEventListener('click', () => pads[name].clear());
    buildBars($(`bars-${name}`));
    buildSamples($(`samples-${name}`), samples.digits, pads[name]);
  }
  model = await loadModel(info);
  const query = new URLSearchParams(location.search);
  if (query.has('a') || query.has('b')) {
    if (!['a', 'b'].every((k) => /^\d$/.test(query.get(k)))) {
      throw new Error('?a= and ?b= take sample digits 0 to 9, e.g. ?a=3&b=7');
    }
    for (const name of ['a', 'b']) pads[name].showSample(samples.digits[Number(query.get(name))].pixels.flat());
  }
  changed();
}

/** A pad changed: run the model again, once per animation frame at most, on the newest drawing. */
function changed() {
  if (!model) return;
  dirty = true;
  body.dataset.status = 'busy';
  loop ??= runWhileDirty().catch(fail).finally(() => { loop = null; });
}

async function runWhileDirty() {
  while (dirty) {
    await new Promise(requestAnimationFrame);
    dirty = false;
    await runOnce();
  }
  body.dataset.status = 'ready';
}

async function runOnce() {
  const [a, b] = [pads.a.digit(), pads.b.digit()];
  for (const [name, digit] of [['a', a], ['b', b]]) preview($(`preview-${name}`), digit);
  if (!a || !b) {
    showDecision(null);
    return;
  }
  const out = await model.predict(a, b);
  const result = { a_le_b: out.a_le_b[0], prob_a_le_b: out.prob_a_le_b[0],
                   digit_a: argmax(out.digit_a_probs), digit_b: argmax(out.digit_b_probs) };
  showDecision(result);
  showBars($('bars-a'), out.digit_a_probs);
  showBars($('bars-b'), out.digit_b_probs);
  body.dataset.pixels = JSON.stringify({ digit_a: Array.from(a), digit_b: Array.from(b) });
  body.dataset.result = JSON.stringify(result);
}

function describe(info) {
  const percent = (x) => (x == null ? '?' : `${(100 * x).toFixed(1)} %`);
  $('model').textContent = info.file
    ? `Model ${info.arch}, float32 (${info.file}, batch 1), running in this browser with LiteRT.js (wasm). ` +
      `Test accuracy of ${info.accuracy_of}: ${percent(info.pair_accuracy)} of ${info.test_pairs} pairs, ` +
      `${percent(info.digit_accuracy)} of digits.`
    : 'No model.';
}

function showDecision(result) {
  $('decision').textContent = result ? (result.a_le_b ? 'A ≤ B' : 'A > B') : 'Draw both digits';
  $('decision').className = result ? (result.a_le_b ? 'le' : 'gt') : '';
  $('probability').textContent = result ? `P(A ≤ B) = ${result.prob_a_le_b.toFixed(3)}` : '';
  $('gauge-fill').style.width = result ? `${100 * result.prob_a_le_b}%` : '0';
  $('reading').textContent = result ? `read as ${result.digit_a} and ${result.digit_b}` : '';
}

function buildBars(list) {
  for (let d = 0; d < 10; d++) {
    list.insertAdjacentHTML('beforeend',
      `<li><span class="label">${d}</span><span class="bar"><span class="fill"></span></span>` +
      '<span class="value"></span></li>');
  }
}

function showBars(list, probs) {
  const best = argmax(probs);
  [...list.children].forEach((item, d) => {
    item.classList.toggle('best', d === best);
    item.querySelector('.fill').style.width = `${100 * probs[d]}%`;
    item.querySelector('.value').textContent = probs[d].toFixed(3);
  });
}

function buildSamples(container, digits, pad) {
  for (const { label, pixels } of digits) {
    const button = document.createElement('button');
    button.title = `a real MNIST ${label}`;
    button.append(thumbnail(pixels.flat()));
    button.addEventListener('click', () => pad.showSample(pixels.flat()));
    container.append(button);
  }
}

/** What the model sees: the 28 x 28 digit, drawn at 2x. */
function preview(canvas, digit) {
  const context = canvas.getContext('2d');
  context.imageSmoothingEnabled = false;
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (digit) context.drawImage(thumbnail(digit), 0, 0, canvas.width, canvas.height);
}

function thumbnail(pixels) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 28;
  const context = canvas.getContext('2d');
  const image = context.createImageData(28, 28);
  pixels.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  context.putImageData(image, 0, 0);
  return canvas;
}

function argmax(values) {
  return values.reduce((best, v, i) => (v > values[best] ? i : best), 0);
}

function fail(error) {
  $('message').textContent = error.message || String(error);
  $('message').hidden = false;
  body.dataset.status = 'error';
}

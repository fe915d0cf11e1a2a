/**
 * The model in the browser: LiteRT.js (CPU / wasm backend) running `<arch>_web.tflite`, whose inputs
 * are fixed at [1, 28, 28] because LiteRT.js rejects dynamic dimensions. LiteRT.js and its wasm come
 * from the server, which ships them in the package (keras_pairs/server/litertjs), never from a CDN,
 * so the page works offline.
 */

const LITERT = '/litertjs/core';

/** info: /model/info.json. Resolves to {predict(a, b)}; rejects with a message saying what to run. */
export async function loadModel(info) {
  if (!info.url) throw new Error(`The page's model is not available: ${info.problem}`);
  const probe = await fetch(`${LITERT}/dist/index.js`); // the server says what to run when it is missing
  if (!probe.ok) {
    const reason = await probe.json().catch(() => ({}));
    throw new Error(reason.error || `The server did not send LiteRT.js (HTTP ${probe.status}).`);
  }
  const litert = await import('@litertjs/core');
  await litert.loadLiteRt(`${LITERT}/wasm/`);
  let model;
  try {
    model = await litert.loadAndCompile(info.url, { accelerator: 'wasm' });
  } catch (error) {
    throw new Error(`Could not load ${info.file} (${error.message || error}). ` +
                    'Re-make it with `python export.py --tflite`.');
  }
  return { predict: (a, b) => predict(litert, model, a, b) };
}

/** Two Uint8Array(784) digits -> {prob_a_le_b, a_le_b, digit_a_probs, digit_b_probs} (plain arrays). */
async function predict(litert, model, digitA, digitB) {
  const inputs = { digit_a: new litert.Tensor(digitA, [1, 28, 28]),
                   digit_b: new litert.Tensor(digitB, [1, 28, 28]) };
  try {
    const outputs = await model.run(inputs);
    const result = {};
    for (const [name, tensor] of Object.entries(outputs)) {
      const onCpu = await tensor.moveTo('wasm');
      result[name] = Array.from(onCpu.toTypedArray());
      onCpu.delete();
    }
    return result;
  } finally {
    Object.values(inputs).forEach((t) => t.delete());
  }
}

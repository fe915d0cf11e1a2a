"""The server: the drawing page with its model file, and TF Serving's REST API, as one Starlette app
run by uvicorn.

    GET  /                                  the page (static/index.html)
    GET  /model/info.json, /model/web.tflite   what the page runs (LiteRT.js, in the browser)
    GET  /node_modules/@litertjs/...        LiteRT.js and its wasm, from `npm ci` (no CDN: works offline)
    GET  /v1/models/keras_pairs             model status           } TF Serving's REST API,
    GET  /v1/models/keras_pairs/metadata    signature              } run here with ai-edge-litert
    POST /v1/models/keras_pairs:predict     predictions            }

Parsing and inference run in worker threads so the event loop keeps accepting requests. Every error
is JSON: {"error": "..."}; bad requests are 400s (payload.py), unknown paths 404s.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .inference import ModelLoadError, PairModel
from .locate import ModelFiles, find_model_files
from .payload import MAX_BODY_BYTES, MAX_INSTANCES, BadRequest, format_outputs, parse_predict

MODEL_NAME = "keras_pairs"
STATIC = Path(__file__).parent / "static"
TF_DTYPES = {"uint8": "DT_UINT8", "float32": "DT_FLOAT", "int32": "DT_INT32"}


def serve(model: str | None, run: str | None, models_dir: str, host: str, port: int,
          node_modules: Path) -> None:
    """Finds the model files (locate.py; raises ModelNotFound for a named path that is not there)
    and serves until interrupted."""
    app = create_app(find_model_files(model, run, models_dir), node_modules)
    print(f"keras_pairs: page on http://{host}:{port}/ , API on "
          f"http://{host}:{port}/v1/models/{MODEL_NAME}:predict", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, access_log=False)


def create_app(files: ModelFiles, node_modules: Path) -> Starlette:
    model, api_problem = _load_api_model(files)
    for problem in (api_problem, files.web_problem):
        if problem:
            print(f"keras_pairs: {problem}", file=sys.stderr)

    async def page(request: Request):
        return FileResponse(STATIC / "index.html")

    async def page_info(request: Request):
        return JSONResponse(_page_info(files))

    async def web_model(request: Request):
        if files.web is None:
            return _error(404, files.web_problem)
        return FileResponse(files.web, media_type="application/octet-stream")

    async def status(request: Request):
        if model is None:
            return _error(503, api_problem)
        return JSONResponse({"model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})

    async def metadata(request: Request):
        if model is None:
            return _error(503, api_problem)
        return JSONResponse(_metadata(model, files))

    async def predict(request: Request):
        if model is None:
            return _error(503, api_problem)
        body = await _read_body(request)
        return JSONResponse(await run_in_threadpool(_predict, model, body))

    litert = node_modules / "@litertjs"
    routes = [
        Route("/", page),
        Route("/model/info.json", page_info),
        Route("/model/web.tflite", web_model),
        Route(f"/v1/models/{MODEL_NAME}", status),
        Route(f"/v1/models/{MODEL_NAME}/metadata", metadata),
        Route(f"/v1/models/{MODEL_NAME}:predict", predict, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC)),
        Mount("/node_modules/@litertjs", StaticFiles(directory=litert)) if litert.is_dir() else
        Route("/node_modules/@litertjs/{path:path}", _litert_missing(node_modules)),
    ]
    return Starlette(routes=routes, exception_handlers={
        BadRequest: lambda request, error: _error(400, str(error)),
        HTTPException: lambda request, error: _error(error.status_code, error.detail),
    })


def _load_api_model(files: ModelFiles) -> tuple[PairModel | None, str | None]:
    if files.api is None:
        return None, files.api_problem
    try:
        return PairModel(files.api), None
    except ModelLoadError as error:
        return None, str(error)


def _predict(model: PairModel, body: bytes) -> dict:
    digit_a, digit_b, request_format = parse_predict(body)
    return format_outputs(model.predict(digit_a, digit_b), request_format)


async def _read_body(request: Request) -> bytes:
    """The body, refused as soon as it is known to exceed MAX_BODY_BYTES (declared or streamed)."""
    too_big = f"the body exceeds {MAX_BODY_BYTES} bytes; send at most {MAX_INSTANCES} pairs per request"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(too_big)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(too_big)
        chunks.append(chunk)
    return b"".join(chunks)


def _page_info(files: ModelFiles) -> dict:
    """What the page states about its model. Until export.json lists the web file itself, its
    accuracy is the float32 file's: the same graph with the batch fixed at 1."""
    rows = files.export.get("rows", [])
    web_name = files.web.name if files.web else None
    row = (next((r for r in rows if r.get("file") == web_name), None)
           or next((r for r in rows if r.get("mode") == "float32"), {}))
    return {"arch": files.export.get("arch"), "file": web_name,
            "url": "/model/web.tflite" if files.web else None,
            "accuracy_of": row.get("file"), "pair_accuracy": row.get("pair_accuracy"),
            "digit_accuracy": row.get("digit_accuracy"), "test_pairs": files.export.get("test_pairs"),
            "problem": files.web_problem}


def _metadata(model: PairModel, files: ModelFiles) -> dict:
    """TF Serving's GetModelMetadata answer, plus this server's limits and the file it runs."""
    def tensors(details: dict) -> dict:
        return {name: {"name": name, "dtype": TF_DTYPES.get(d["dtype"], d["dtype"]),
                       "tensor_shape": {"dim": [{"size": str(n), "name": ""} for n in d["shape"]],
                                        "unknown_rank": False}}
                for name, d in sorted(details.items())}

    signature = {"inputs": tensors(model.inputs), "outputs": tensors(model.outputs),
                 "method_name": "tensorflow/serving/predict"}
    return {"model_spec": {"name": MODEL_NAME, "signature_name": "", "version": "1"},
            "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}},
            "keras_pairs": {"file": model.path.name, "arch": files.export.get("arch"),
                            "max_instances": MAX_INSTANCES, "max_body_bytes": MAX_BODY_BYTES}}


def _litert_missing(node_modules: Path):
    async def missing(request: Request):
        return _error(404, f"LiteRT.js is not installed ({node_modules}/@litertjs is missing): "
                           f"run `npm ci` in {node_modules.parent}")
    return missing


def _error(status: int, message: str | None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)

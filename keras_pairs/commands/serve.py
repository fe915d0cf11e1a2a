"""Serve the model: a page to draw two digits (the model runs in the browser) and TF Serving's REST API.

    python serve.py                              # the most recently exported run under saved_models/,
                                                 # else the model shipped in the package
    python serve.py --run saved_models/v5        # that run's export/ folder
    python serve.py --model saved_models/v5/export/v5_float32.tflite --port 8080 --cors

Open http://127.0.0.1:8000/ . The page's runtime (LiteRT.js) ships in the package; see
docs/serving.md. Flags only: the work is done by keras_pairs.server.app.serve.
"""

import argparse

from .. import cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="the .tflite file the API runs (the page runs <arch>_web.tflite "
                                       "beside it)")
    cli.add_run_arguments(p, "serve the export/ of", arch=False, run_group=which, without="--model/--run",
                          default="the run here exported most recently (deployable ones first), else the "
                                  "model shipped in the package")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--cors", action="store_true",
                   help="let pages from any origin call the API (Access-Control-Allow-Origin: *, OPTIONS "
                        "preflights), like TF Serving's --rest_api_enable_cors_support")
    p.add_argument("--timeout", type=cli.positive_float, default=30.0, metavar="S",
                   help="seconds a request body may take to arrive, and its answer to be computed (default 30)")
    p.add_argument("--max-concurrent", type=cli.positive_int, default=64, metavar="N",
                   help="API requests in progress at once; more are answered 503 at once (default 64)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def serve():
        from keras_pairs.errors import require_extra

        require_extra("serve", "starlette", "uvicorn")
        from keras_pairs.server.app import Limits, serve

        limits = Limits(upload_seconds=args.timeout, request_seconds=args.timeout, max_concurrent=args.max_concurrent)
        serve(args.model, args.run_dir, args.models_dir, args.host, args.port, args.cors, limits)

    return cli.execute(args, serve, tensorflow=False)  # the server runs LiteRT only


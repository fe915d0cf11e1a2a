"""Throughput and latency of a running server's predict API: concurrent clients over loopback.

    python serve.py &                                # any server (default http://127.0.0.1:8000)
    python -m keras_pairs.server.bench               # 8 clients x 200 requests, 1 and 64 pairs each

Each client keeps one HTTP/1.1 connection and sends its requests one after another; the bodies
(row format, pairs of the page's sample digits) are built before the clock starts. Prints requests/s,
pairs/s, p50 and p99 latency and the error count per batch size; exits 1 if any request failed.
Figures for docs/serving.md, not a timed test: the clients share the machine with the server.
The machine's state (CPU, cores, load before and after) is printed with the figures, with a loud
warning when it was busy as the benchmark started (``machine.py``); ``--output DIR`` writes the
figures (bench.json) and the state (machine.json) there.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from urllib.parse import urlsplit

import numpy as np

from .. import machine
from .samples import PATH as SAMPLES

PREDICT = "/v1/models/keras_pairs:predict"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default http://127.0.0.1:8000)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--requests", type=int, default=200, help="requests per client (default 200)")
    p.add_argument("--batches", default="1,64", help="pairs per request, comma-separated (default 1,64)")
    p.add_argument("--output", metavar="DIR", help="write bench.json and machine.json to DIR")
    args = p.parse_args(argv)
    print(f"{args.clients} clients x {args.requests} requests to {args.url}{PREDICT}")
    print("| pairs/request | requests/s | pairs/s | p50 ms | p99 ms | errors |\n|---:|---:|---:|---:|---:|---:|")
    rows = []
    with machine.timed_machine("server benchmark") as state:
        for batch in (int(b) for b in args.batches.split(",")):
            latencies, errors, seconds = measure(urlsplit(args.url).netloc, _body(batch), args.clients, args.requests)
            p50, p99 = np.percentile(latencies, [50, 99]) * 1000 if latencies else (float("nan"),) * 2
            rows.append({"pairs_per_request": batch, "requests_per_s": len(latencies) / seconds,
                         "pairs_per_s": batch * len(latencies) / seconds, "p50_ms": p50, "p99_ms": p99,
                         "errors": errors})
            print(f"| {batch} | {len(latencies) / seconds:.0f} | {batch * len(latencies) / seconds:.0f} "
                  f"| {p50:.1f} | {p99:.1f} | {errors} |", flush=True)
    print(f"machine: {state.describe()}")
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        with open(os.path.join(args.output, "bench.json"), "w") as f:
            json.dump({"url": args.url, "clients": args.clients, "requests": args.requests, "rows": rows}, f, indent=2)
        machine.write(args.output, state)
    return 1 if any(r["errors"] for r in rows) else 0


def measure(host: str, body: bytes, clients: int, requests: int) -> tuple[list[float], int, float]:
    """``clients`` concurrent clients send ``requests`` requests each: (latencies in seconds of the
    successful requests, failed requests, wall seconds)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client():
        connection = http.client.HTTPConnection(host, timeout=60)
        start.wait()
        for _ in range(requests):
            began = time.perf_counter()
            try:
                connection.request("POST", PREDICT, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                ok = response.status == 200 and b"predictions" in response.read()
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()  # reconnects on the next request
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors[0] += 1
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return latencies, errors[0], time.perf_counter() - began


def _body(pairs: int) -> bytes:
    digits = [d["pixels"] for d in json.loads(SAMPLES.read_text())["digits"]]
    return json.dumps({"instances": [{"digit_a": digits[i % 10], "digit_b": digits[(3 * i + 1) % 10]}
                                     for i in range(pairs)]}).encode()


if __name__ == "__main__":
    sys.exit(main())

"""Makes the README's picture of the page (docs/serve.png) from the shipped model.

    python -m keras_pairs.server.screenshot docs/serve.png

The app serves keras_pairs/pretrained under uvicorn in a thread on 127.0.0.1; headless Chromium
(Debian's /usr/bin/chromium through Python Playwright, as in tests/test_serve.py) opens the page at
960 x 760, draws a 2 on pad A with the mouse and picks the sample 7 for pad B. The picture is
written only when the page read both digits as drawn (2 and 7), so it never shows a wrong reading.
Needs Chromium (LiteRT.js ships in the package).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn

from .. import cli, pretrained
from ..errors import FailedCheck, require_extra
from .app import create_app
from .locate import find_model_files

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
# A 2 in fractions of the pad: the arc, the diagonal, the base.
TWO = [[(0.28, 0.3), (0.38, 0.18), (0.55, 0.15), (0.68, 0.25), (0.68, 0.4), (0.5, 0.58), (0.28, 0.82)],
       [(0.28, 0.82), (0.75, 0.82)]]


def screenshot(output: Path, timeout: float = 60) -> dict:
    """Writes the picture; returns the page's result."""
    from playwright.sync_api import sync_playwright

    app = create_app(find_model_files(run=str(pretrained.DIR)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start")
            time.sleep(0.05)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 960, "height": 760})
            page.set_default_timeout(timeout * 1000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.body.dataset.status === 'ready'")
            draw(page, "a", TWO)
            page.click("#samples-b button[title='a real MNIST 7']")
            page.wait_for_function("document.body.dataset.status === 'ready' && document.body.dataset.result")
            result = json.loads(page.evaluate("document.body.dataset.result"))
            if (result["digit_a"], result["digit_b"]) != (2, 7):
                raise FailedCheck(f"the page read {result['digit_a']} and {result['digit_b']}, not 2 and 7; "
                                   f"no picture written")
            page.mouse.move(0, 0)
            page.screenshot(path=str(output))
            browser.close()
        return result
    finally:
        server.should_exit = True
        thread.join(timeout)


def draw(page, pad: str, strokes: list[list[tuple[float, float]]]) -> None:
    """Strokes in pad fractions (0..1) drawn with the mouse on the page's pad ``pad`` ("a" or "b")."""
    box = page.locator(f"#pad-{pad}").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=8)
        page.mouse.up()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("output", type=Path, help="the PNG to write (e.g. docs/serve.png)")
    args = p.parse_args(argv)

    def shoot():
        require_extra("test", "playwright")
        result = screenshot(args.output)
        print(f"wrote {args.output}: P(A <= B) = {result['prob_a_le_b']:.3f}")

    return cli.execute(args, shoot, tensorflow=False)


if __name__ == "__main__":
    sys.exit(main())

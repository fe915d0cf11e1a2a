"""`python serve.py`: a page that runs the model in the browser (LiteRT.js) and TF Serving's REST
API over ai-edge-litert, from one server. Nothing here imports TensorFlow or Keras, so the
serving process stays small and starts fast (tests/test_serve.py checks it).

    locate.py      which .tflite files to serve (the rule for picking a run; the shipped model last)
    inference.py   a pool of LiteRT interpreters, one per concurrent request
    payload.py     TF Serving request bodies -> checked uint8 arrays (every mistake a 400), fast path
    app.py         the routes, TF Serving's URL forms and messages, the limits, `serve` under uvicorn
    runtime.py     the page's LiteRT.js, shipped in litertjs/: its files, and their refresh from npm's lock
    samples.py     writes static/samples.json, one real MNIST digit per class
    bench.py       requests/s and latency of a running server
    screenshot.py  docs/serve.png from the shipped model, in headless Chromium
"""

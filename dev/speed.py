"""Seconds per training epoch of siamese-prob-aug: python dev/speed.py {auto,jit0,jit1,bf16} [b200]."""
import sys, os, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np, keras
from keras_pairs import config, data as data_lib, training, models
import dataclasses
mode = sys.argv[1]
if mode == "bf16":
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
arch = config.get_arch("siamese-prob-aug")
if "b200" in sys.argv[2:]:
    arch = dataclasses.replace(arch, batch_size=200)
mnist = data_lib.load_mnist("auto")
data = training.prepare_round(mnist, 1000, 1000, 0.0, 1)
model = models.build_model(arch, background=data.background)
jit = {"jit0": False, "jit1": True}.get(mode, "auto")
models.compile_model(model, arch, steps_per_epoch=10, jit_compile=jit)
print("jit", model.jit_compile)
ds = training.fit_inputs(model, arch, data.fit, None, 1)
model.fit(epochs=1, verbose=0, **ds)
t = time.perf_counter(); model.fit(epochs=5, verbose=0, **ds); print(sys.argv[1:], "s/epoch", (time.perf_counter() - t) / 5)

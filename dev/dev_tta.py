"""Trains the base config per round (as dev_eval) and saves the dev digits' probabilities for every
shift (dy, dx) in -2..2, so test-time view sets can be compared offline on the same models."""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np, keras
from keras_pairs import config, data as data_lib, training, models
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dev_big import view  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
arch = config.get_arch(sys.argv[1])
rounds, seed0 = int(sys.argv[2]), int(sys.argv[3])
mnist = data_lib.load_mnist("auto")
os.makedirs(os.path.join(HERE, "views"), exist_ok=True)
for r in range(rounds):
    seed = seed0 + r
    keras.utils.set_random_seed(seed)
    data = training.prepare_round(mnist, 1000, 1000, 0.1, seed)
    used = set(data.fit.index.ravel().tolist()) | set(data.val.index.ravel().tolist())
    dev = np.array(sorted(set(range(len(mnist.x_train))) - used))
    dev_x = (data_lib.pool_2x2(mnist.x_train[dev]).astype("float32") - data.mean) / data.std
    model = models.build_model(arch, background=data.background)
    models.compile_model(model, arch, steps_per_epoch=training.steps_per_epoch(arch, len(data.fit)))
    t = time.perf_counter()
    model.fit(epochs=arch.epochs, verbose=0, **training.fit_inputs(model, arch, data.fit, None, seed))
    views = {}
    x = np.stack([dev_x, dev_x], -1)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            xv = np.stack([view(x[..., c], data.background, dy=dy, dx=dx) for c in (0, 1)], -1)
            views[f"{dy}_{dx}"] = model.predict(xv, batch_size=1000, verbose=0)["digit_a"]
    np.savez(os.path.join(HERE, "views", f"{arch.name}_s{seed}.npz"), y=mnist.y_train[dev], **views)
    print(f"round {r} seed {seed}: {time.perf_counter() - t:.1f}s digit {np.mean(views['0_0'].argmax(-1) == mnist.y_train[dev]):.4f}", flush=True)

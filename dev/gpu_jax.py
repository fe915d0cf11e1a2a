"""GPU timing of keras_pairs' best model with Keras' JAX backend (dev only).

The device machines lent here have JAX with CUDA but no TensorFlow, and TensorFlow's wheel (~600 MB)
cannot travel there, so this trains the same Keras model (models.build_model, the same losses and
optimiser) with KERAS_BACKEND=jax and a numpy input pipeline. It times whole rounds of the standard
protocol and scores the test pairs with the inference model (test-time views).
  KERAS_BACKEND=jax python dev/gpu_jax.py DATA.npz [--rounds 2] [--arch siamese-prob-aug-tta-x2]
DATA.npz: a Keras-layout MNIST archive (write the default data's with --write-default DATA.npz).
"""
import argparse, json, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--arch", default="siamese-prob-aug-tta-x2")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=0, help="override the architecture's epochs (smoke tests)")
    p.add_argument("--write-default", action="store_true", help="write the default data to DATA and stop")
    p.add_argument("--jit", choices=("auto", "on", "off"), default="on",
                   help="'on' forces XLA/torch.compile past Keras' check: its Random* augmentation layers "
                        "declare supports_jit=False, so 'auto' (and even jit_compile=True) means no jit")
    args = p.parse_args()
    from keras_pairs import config, data as data_lib, training, models
    if args.write_default:
        m = data_lib.load_mnist("auto")
        np.savez_compressed(args.data, x_train=m.x_train, y_train=m.y_train, x_test=m.x_test, y_test=m.y_test)
        return print("wrote", args.data)
    import keras
    info = {"backend": keras.backend.backend()}
    if info["backend"] == "jax":
        import jax
        info["devices"] = [str(d) for d in jax.devices()]
    elif info["backend"] == "torch":
        import torch
        info["cuda"] = torch.cuda.is_available()
        info["devices"] = [torch.cuda.get_device_name(0)] if info["cuda"] else ["cpu"]
        from keras.src.backend.torch.core import get_device
        info["keras_device"] = str(get_device())
    info["jit"] = args.jit
    print(json.dumps(info), flush=True)
    arch = config.get_arch(args.arch)
    if args.epochs:
        arch = config.with_overrides(arch, epochs=args.epochs)
    mnist = data_lib.load_npz(args.data)
    for r in range(args.rounds):
        keras.utils.set_random_seed(r)
        data = training.prepare_round(mnist, 1000, 1000, 0.1, r)
        start = time.perf_counter()
        model = models.build_model(arch, background=data.background)
        models.compile_model(model, arch, steps_per_epoch=training.steps_per_epoch(arch, len(data.fit)))
        force_jit(model, args.jit)
        ends = []
        stamp = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: ends.append(time.perf_counter()))
        model.fit(epochs=arch.epochs, verbose=0, callbacks=[stamp],
                  **training.fit_inputs(model, arch, data.fit, None, r, pipeline="numpy"))
        fit_s = time.perf_counter() - start
        print(json.dumps({"round": r, "first_epoch_s": round(ends[0] - start, 2), "later_epoch_s":
                          round((ends[-1] - ends[0]) / max(len(ends) - 1, 1), 3)}), flush=True)
        infer = models.inference_model(model, arch, data.background)
        if infer is not model and args.jit == "on" and keras.backend.backend() == "jax":
            infer.compile(jit_compile=True)  # the views model has no Random* layer: a plain jit
            infer._jit_compile = True
        if r == 0:
            print(json.dumps({"fit_jit_compile": model._jit_compile,
                              "predict_jit_compile": getattr(infer, "_jit_compile", None)}), flush=True)
        out = infer.predict(data.test.images, batch_size=1000, verbose=0)
        pair = float(np.mean(out["pair"].argmax(-1) == data.test.target))
        digit = float(np.mean(np.concatenate([out["digit_a"].argmax(-1) == data.test.classes[:, 0],
                                              out["digit_b"].argmax(-1) == data.test.classes[:, 1]])))
        print(json.dumps({"round": r, "seconds": round(time.perf_counter() - start, 2), "fit_seconds":
                          round(fit_s, 2), "test_pair": pair, "test_digit": digit}), flush=True)


def force_jit(model, mode):
    """'on': jit the train step even though Keras' Random* layers set supports_jit = False.

    The ``jit_compile`` setter (and "auto") refuse jit when any layer has supports_jit False, so the
    private attribute is set directly. Under JAX the augmentation layers' ops (random draws from a
    SeedGenerator whose state the trainer threads through the step, affine_transform via
    map_coordinates) trace fine; the flag exists for TensorFlow's XLA. Under torch, True means
    torch.compile (inductor).
    """
    if mode == "on":
        model._jit_compile = True
    elif mode == "off":
        model._jit_compile = False
    # "auto": leave Keras' own resolution (no jit here, because of the Random* layers)


if __name__ == "__main__":
    main()

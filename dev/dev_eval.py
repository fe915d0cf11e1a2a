"""Development scoring that never touches the test split.

Each round draws the standard 1000 training pairs from the train split (as the real protocol does),
trains on them, and scores the model on the train-split digits that the round did NOT draw
(~500 digits): digit accuracy, and the pair accuracy of the exact P(a<=b) decision over all ordered
pairs of those digits. Usage:
  python dev/dev_eval.py --arch siamese-prob-aug --rounds 4 --set epochs=60 --set encoder.dropout=0.2
"""
import argparse, ast, dataclasses, sys, time, os
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np
import keras
from keras_pairs import config, data as data_lib, training, models
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dev_big import pair_accuracy, view  # noqa: E402
import tricks  # noqa: E402  (its CALLBACKS reach every dev fit)


def parse_set(cfg, items):
    enc = {}
    top = {}
    for item in items:
        key, value = item.split("=", 1)
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        if key.startswith("encoder."):
            enc[key[8:]] = value
        else:
            top[key] = value
    return dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, **enc), **top).validate()


HERE = os.path.dirname(os.path.abspath(__file__))


def round_args(p, arch):
    """The options every dev script shares: which configuration, how many rounds, which seeds."""
    p.add_argument("--arch", default=arch)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--val", type=float, default=0.1)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--tag", default="")
    p.add_argument("--aug", default="", help="shift,rotation_deg,zoom")
    p.add_argument("--ema", type=float, default=0.0, help="weight EMA momentum (0 = off)")
    return p


def train_round(arch, data, seed):
    """A model of ``arch`` built with ``seed`` and trained on the round's fit pairs (shuffled with
    ``seed``), as the protocol trains it; returns (model, seconds of fit)."""
    keras.utils.set_random_seed(seed)
    model = models.build_model(arch, background=data.background)
    models.compile_model(model, arch, steps_per_epoch=training.steps_per_epoch(arch, len(data.fit)))
    start = time.perf_counter()
    model.fit(epochs=arch.epochs, verbose=0, callbacks=list(tricks.CALLBACKS),
              **training.fit_inputs(model, arch, data.fit, None, seed))
    return model, time.perf_counter() - start


def set_ema(ema):
    """Weight EMA with this momentum in every optimizer of this process (0 = off); fit swaps the
    averaged weights in at its end."""
    if ema:
        orig = models.make_optimizer
        def make_optimizer(arch, steps):
            opt = orig(arch, steps)
            opt.use_ema, opt.ema_momentum, opt.ema_overwrite_frequency = True, ema, None
            return opt
        models.make_optimizer = make_optimizer


def set_augmentation(aug):
    """--aug "shift,rotation_deg,zoom": the training augmentation's ranges for this process."""
    if aug:
        sh, rot, zm = (float(v) for v in aug.split(","))
        models.AUGMENT_SHIFT, models.AUGMENT_ROTATION, models.AUGMENT_ZOOM = sh, rot / 360.0, zm


def main():
    p = round_args(argparse.ArgumentParser(), "siamese-prob-aug")
    p.add_argument("--init", type=int, default=0, help="init/shuffle seed offset (same data)")
    args = p.parse_args()
    set_ema(args.ema)
    set_augmentation(args.aug)
    arch = parse_set(config.get_arch(args.arch), args.set)
    mnist = data_lib.load_mnist("auto")
    rows = []
    for r in range(args.rounds):
        seed = args.seed + r
        keras.utils.set_random_seed(seed)
        data = training.prepare_round(mnist, 1000, 1000, args.val, seed)
        used = set()
        for ps in (data.fit, data.val):
            if ps is not None:
                used.update(ps.index.ravel().tolist())
        # val pairs come from the training pairs; the dev digits are the undrawn train-split ones
        dev = np.array(sorted(set(range(len(mnist.x_train))) - used))
        dev_x = ((data_lib.pool_2x2(mnist.x_train[dev]).astype("float32") - data.mean) / data.std)
        dev_y = mnist.y_train[dev]
        model, secs = train_round(arch, data, seed + 7919 * args.init)
        pairs = np.stack([dev_x, dev_x], axis=-1)
        out = model.predict(pairs, batch_size=1000, verbose=0)
        probs = out["digit_a"]
        # test-time augmentation: identity + 1-pixel shifts (background fill)
        tta = [probs]
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            sh = view(dev_x, data.background, dy=dy, dx=dx)
            tta.append(model.predict(np.stack([sh, sh], -1), batch_size=1000, verbose=0)["digit_a"])
        tta = np.mean(tta, 0)
        tag = (args.tag or args.arch) + f"_i{args.init}"
        os.makedirs(os.path.join(HERE, "probs"), exist_ok=True)
        np.savez(os.path.join(HERE, "probs", f"{tag}_s{seed}.npz"), probs=probs, tta=tta, y=dev_y)
        tta_digit = float(np.mean(tta.argmax(-1) == dev_y))
        digit_acc = float(np.mean(probs.argmax(-1) == dev_y))
        pair_acc = pair_accuracy(probs, dev_y)
        tta_pair = pair_accuracy(tta, dev_y)
        rows.append({"seed": seed, "digit": digit_acc, "pair": pair_acc, "seconds": secs, "tdigit": tta_digit, "tpair": tta_pair})
        print(f"  round {r}: digit {digit_acc:.4f} pair {pair_acc:.4f} tta {tta_digit:.4f} {tta_pair:.4f} {secs:.1f}s n_dev={len(dev)}", flush=True)
    m = {k: 100 * np.mean([x[k] for x in rows]) for k in rows[0] if k != "seed"}
    line = (f"{args.tag or args.arch} {' '.join(args.set)} aug={args.aug} ema={args.ema} val={args.val} init={args.init}: digit {m['digit']:.2f} "
            f"pair {m['pair']:.2f} tta digit {m['tdigit']:.2f} pair {m['tpair']:.2f} sec {m['seconds']/100:.1f}")
    print(line)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "log.txt"), "a") as f:
        f.write(line + " | digits " + " ".join(f"{x['digit']:.4f}" for x in rows) + "\n")


if __name__ == "__main__":
    main()

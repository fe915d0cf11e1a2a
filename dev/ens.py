"""Scores the average of saved dev probabilities of several tags: python dev/ens.py tagA_i0 tagB_i1 ..."""
import sys, os, glob, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dev_eval import pair_accuracy
HERE = os.path.dirname(os.path.abspath(__file__))
tags = sys.argv[1:]
seeds = sorted({os.path.basename(f).rsplit("_s", 1)[1][:-4] for f in glob.glob(os.path.join(HERE, "probs", tags[0] + "_s*.npz"))})
for key in ("probs", "tta"):
    d, pa = [], []
    for s in seeds:
        files = [np.load(os.path.join(HERE, "probs", f"{t}_s{s}.npz")) for t in tags]
        if not all(os.path.exists(os.path.join(HERE, "probs", f"{t}_s{s}.npz")) for t in tags):
            continue
        p = np.mean([f[key] for f in files], 0); y = files[0]["y"]
        d.append(np.mean(p.argmax(-1) == y)); pa.append(pair_accuracy(p, y))
    print(key, "seeds", seeds, "digit %.2f pair %.2f" % (100 * np.mean(d), 100 * np.mean(pa)), " ".join("%.3f" % x for x in d))

"""Scores saved test-time view sets of dev_tta.py: python dev/tta_score.py ARCH."""
import glob, os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dev_eval import pair_accuracy
files = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "views", sys.argv[1] + "_s*.npz")))
sets = {
  "1": [(0, 0)],
  "5": [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)],
  "9": [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)],
  "5+id": [(0, 0)] * 2 + [(1, 0), (-1, 0), (0, 1), (0, -1)],
  "9+2ax": [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)] + [(2, 0), (-2, 0), (0, 2), (0, -2)],
  "25": [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)],
}
for name, views in sets.items():
    d, p = [], []
    for f in files:
        z = np.load(f)
        probs = np.mean([z[f"{dy}_{dx}"] for dy, dx in views], 0)
        d.append(np.mean(probs.argmax(-1) == z["y"])); p.append(pair_accuracy(probs, z["y"]))
    print(f"{name:6s} n={len(files)} digit {100*np.mean(d):.2f} pair {100*np.mean(p):.2f}  ", " ".join(f"{x:.3f}" for x in d))

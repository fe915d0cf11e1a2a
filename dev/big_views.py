"""Scores sets of test-time views from dev_big.py --views files: python dev/big_views.py TAG [power]"""
import glob, os, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dev_big import pair_accuracy, HERE
files = [dict(np.load(f)) for f in sorted(glob.glob(os.path.join(HERE, "probs", f"big_{sys.argv[1]}_s*.npz")))]
power = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
shifts = [f"v_s{dy}{dx}" for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
I = ["v_s00"]
sets = {
    "1 view": I, "3x3 shifts": shifts, "axis shifts": I + ["v_s-10", "v_s10", "v_s0-1", "v_s01"],
    "rot3": I + ["v_r-3", "v_r3"], "rot6": I + ["v_r-6", "v_r6"], "rot9": I + ["v_r-9", "v_r9"],
    "rot3+6": I + ["v_r-3", "v_r3", "v_r-6", "v_r6"], "rot6+12": I + ["v_r-6", "v_r6", "v_r-12", "v_r12"],
    "zoom.95": I + ["v_z0.95", "v_z1.05"], "zoom.9": I + ["v_z0.9", "v_z1.1"], "zoom.85": I + ["v_z0.85", "v_z1.15"],
    "zoom.9+.95": I + ["v_z0.9", "v_z1.1", "v_z0.95", "v_z1.05"],
    "rot6+zoom.9": I + ["v_r-6", "v_r6", "v_z0.9", "v_z1.1"],
    "rot9+zoom.9": I + ["v_r-9", "v_r9", "v_z0.9", "v_z1.1"],
    "rot6+zoom.9+both": I + ["v_r-6", "v_r6", "v_z0.9", "v_z1.1"] + [k for k in files[0] if k.startswith("v_r") and "z" in k],
    "rot3,6+zoom.9,.95": I + ["v_r-3", "v_r3", "v_r-6", "v_r6", "v_z0.9", "v_z1.1", "v_z0.95", "v_z1.05"],
    "3x3+rot6+zoom.9": shifts + ["v_r-6", "v_r6", "v_z0.9", "v_z1.1"],
    "axis+rot6+zoom.9": I + ["v_s-10", "v_s10", "v_s0-1", "v_s01", "v_r-6", "v_r6", "v_z0.9", "v_z1.1"],
}


def hard(p):
    return np.eye(10)[p.argmax(-1)]


for name, keys in sets.items():
    if not all(k in files[0] for k in keys):
        continue
    ps = [np.mean([f[k] ** power / (f[k] ** power).sum(-1, keepdims=True) for k in keys], 0) for f in files]
    d = [np.mean(p.argmax(-1) == f["y"]) for p, f in zip(ps, files)]
    pa = [pair_accuracy(p, f["y"]) for p, f in zip(ps, files)]
    ph = [pair_accuracy(hard(p), f["y"]) for p, f in zip(ps, files)]
    print(f"{name:18s} digit {100 * np.mean(d):.2f} pair {100 * np.mean(pa):.2f} argmax {100 * np.mean(ph):.2f}  "
          + " ".join(f"{x:.4f}" for x in pa))

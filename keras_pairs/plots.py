"""Figures of a results folder (written by keras_pairs.experiments), as small PNGs.

  curves_reportA.png   accuracy and loss per epoch, train / validation / test, mean +- 1 std over
                       rounds, for Baseline, Siamese2, Siamese10 (report A Figure 2)
  curves_v5.png        the same for v5 (report B Figure 3)
  pair_vs_digit.png    pair accuracy next to digit accuracy, train and test, for aux-loss models
                       (report B Figure 1: v2 and v4)
  comparator.png       the trained pair head on the 100 one-hot-like (i, j) encodings: white =
                       class 1 (i <= j), black = class 0, next to the ideal (report B Figure 2)
  confusion.png        confusion matrix of the digit predictions on the test pairs, summed over
                       rounds and both digits

Test curves are scored at each epoch end for plotting only (never for early stopping or model
selection); architectures run without them show train and validation curves only.
"""

from __future__ import annotations

import os

import numpy as np

from .experiments import load_results
from .results import ExperimentsResult

DPI = 80
CURVE_SETS = (("curves_reportA.png", ("baseline", "siamese2", "siamese10"),
               "Report A Figure 2: accuracy and loss per epoch"),
              ("curves_v5.png", ("v5",), "Report B Figure 3: v5 with auxiliary loss"))
PAIR_VS_DIGIT = ("v2", "v4")  # report B Figure 1
COMPARATOR = ("v1", "v5", "v6")  # report B Figure 2
CONFUSION = ("v5", "siamese10", "v4")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _stack(rows_per_round: list[list[dict]], key: str) -> np.ndarray | None:
    """rounds x epochs array of ``key`` (NaN after a round stopped early); None when absent."""
    series = [[row.get(key, np.nan) for row in rows] for rows in rows_per_round if rows]
    if not series or all(np.all(np.isnan(s)) for s in series):
        return None
    width = max(len(s) for s in series)
    out = np.full((len(series), width), np.nan)
    for i, s in enumerate(series):
        out[i, :len(s)] = s
    return out


def _digit_rows(rows_per_round: list[list[dict]], prefix: str = "") -> list[list[dict]]:
    """Adds the mean of digit_a/digit_b accuracy as ``digit_accuracy`` to Keras history rows."""
    out = []
    for rows in rows_per_round:
        out.append([{**r, f"{prefix}digit_accuracy": (r[f"{prefix}digit_a_accuracy"] + r[f"{prefix}digit_b_accuracy"]) / 2}
                    if f"{prefix}digit_a_accuracy" in r else r for r in rows])
    return out


def _band(ax, values: np.ndarray | None, label: str, color: str, scale: float = 1.0) -> None:
    if values is None:
        return
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(values, axis=0) * scale
        std = (np.nanstd(values, axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])) * scale
    std = np.nan_to_num(std)
    epochs = np.arange(1, len(mean) + 1)
    ax.plot(epochs, mean, color=color, label=label, lw=1.5)
    ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.25, lw=0)


def plot_curves(doc: ExperimentsResult, archs, path: str, title: str) -> str | None:
    """Rows = architectures; columns = pair accuracy and loss (train, validation, test)."""
    archs = [a for a in archs if a in doc.archs]
    if not archs:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(archs), 2, figsize=(8, 2.6 * len(archs)), squeeze=False)
    for row, name in zip(axes, archs):
        res = doc.archs[name]
        hist, test = res.histories, list(res.test_curves)
        n = len(hist)
        for ax, key, what in ((row[0], "pair_accuracy", "pair accuracy (%)"), (row[1], "loss", "loss")):
            scale = 100.0 if "accuracy" in key else 1.0
            _band(ax, _stack(hist, key), "train", "tab:blue", scale)
            _band(ax, _stack(hist, "val_" + key), "validation", "tab:orange", scale)
            _band(ax, _stack(test, key), "test (plot only)", "tab:green", scale)
            ax.set_title(f"{name}: {what}, mean ± 1 std over {n} round(s)", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_pair_vs_digit(doc: ExperimentsResult, archs, path: str) -> str | None:
    """Per architecture: pair accuracy | digit accuracy, train and test, side by side."""
    archs = [a for a in archs if a in doc.archs and doc.archs[a].predicts_digits]
    if not archs:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 * len(archs), figsize=(4 * len(archs) + 1, 2.8), squeeze=False)
    for k, name in enumerate(archs):
        res = doc.archs[name]
        hist = _digit_rows(res.histories)
        test = list(res.test_curves)
        for ax, key, what in ((axes[0, 2 * k], "pair_accuracy", "pair"), (axes[0, 2 * k + 1], "digit_accuracy", "digit")):
            _band(ax, _stack(hist, key), "train", "tab:blue", 100)
            _band(ax, _stack(_digit_rows(res.histories, "val_"), "val_" + key), "validation", "tab:orange", 100)
            _band(ax, _stack(test, key), "test (plot only)", "tab:green", 100)
            ax.set_title(f"{name}: {what} accuracy (%)", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        axes[0, 2 * k].legend(fontsize=7, loc="lower right")
    fig.suptitle("Report B Figure 1: pair vs digit accuracy (mean ± 1 std over rounds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_comparator(doc: ExperimentsResult, archs, path: str) -> str | None:
    """Ideal 10x10 decision matrix, then each architecture's (round 1), white = class 1."""
    archs = [a for a in archs if a in doc.archs and doc.archs[a].comparator]
    if not archs:
        return None
    plt = _pyplot()
    i, j = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    panels = [("ideal", (i <= j).astype(int), "")]
    for a in archs:
        comps = doc.archs[a].comparator
        agree = np.mean([c["agreement"] for c in comps])
        panels.append((a, np.asarray(comps[0]["decision"]),
                       f"{100 * comps[0]['agreement']:.0f}% ideal (round 1)\n"
                       f"{100 * agree:.0f}% (mean of {len(comps)})"))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels), 3.1))
    for ax, (name, matrix, note) in zip(np.atleast_1d(axes), panels):
        ax.imshow(matrix, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{name}\n{note}" if note else f"{name}\n", fontsize=8)
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        ax.tick_params(labelsize=6)
        ax.set_xlabel("second digit j", fontsize=7)
        ax.set_ylabel("first digit i", fontsize=7)
    fig.suptitle("Report B Figure 2: pair head on one-hot-like digit encodings "
                 "(white = class 1, i <= j)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_confusion(doc: ExperimentsResult, archs, path: str) -> str | None:
    """Row-normalised confusion matrices of the test digit predictions."""
    archs = [a for a in archs if a in doc.archs and doc.archs[a].confusion]
    if not archs:
        archs = [a for a, r in doc.archs.items() if r.confusion][:3]
    if not archs:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(archs), figsize=(3.4 * len(archs), 3.2), squeeze=False)
    for ax, name in zip(axes[0], archs):
        counts = np.asarray(doc.archs[name].confusion, float)
        share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (r, c), v in np.ndenumerate(share):
            if v >= 0.005:
                ax.text(c, r, f"{100 * v:.0f}", ha="center", va="center", fontsize=5.5,
                        color="white" if v > 0.5 else "black")
        acc = np.trace(counts) / max(counts.sum(), 1)
        ax.set_title(f"{name}: digit accuracy {100 * acc:.1f}%", fontsize=9)
        ax.set_xlabel("predicted digit", fontsize=8)
        ax.set_ylabel("true digit", fontsize=8)
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        ax.tick_params(labelsize=6)
    fig.suptitle("Digit confusion on the test pairs (% of each true digit, all rounds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_all(output: str) -> list[str]:
    """Draws every figure the results allow into ``output``; returns the written paths."""
    doc = load_results(output)
    folder = output if os.path.isdir(output) else os.path.dirname(output)
    written = []
    for name, archs, title in CURVE_SETS:
        written.append(plot_curves(doc, archs, os.path.join(folder, name), title))
    written.append(plot_pair_vs_digit(doc, PAIR_VS_DIGIT, os.path.join(folder, "pair_vs_digit.png")))
    written.append(plot_comparator(doc, COMPARATOR, os.path.join(folder, "comparator.png")))
    written.append(plot_confusion(doc, CONFUSION, os.path.join(folder, "confusion.png")))
    return [p for p in written if p]

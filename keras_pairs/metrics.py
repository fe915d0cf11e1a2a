"""Scores: the one scorer of pair and digit accuracy, summaries over rounds, the digit confusion
matrix and report B's comparator analysis."""

from __future__ import annotations

import keras
import numpy as np

from .config import ArchConfig
from .data import PairSet
from .results import Round, RoundsSummary, Scores, Summary

# Heads with a trainable layer after the two digit outputs, and the layer that concatenates them:
# the comparator analysis (report B Figure 2) applies to these.
COMPARATOR_HEADS = {"digits_concat": "concat_digits", "digits_mlp": "concat_digits",
                    "softmax_dense": "concat_probs"}


def score(pairs: PairSet, a_le_b, digit_a_probs=None, digit_b_probs=None, a_le_b_argmax=None) -> Scores:
    """Pair accuracy of the decisions ``a_le_b`` (N, 1 = a <= b); digit accuracy (mean over both
    digits) where digit probabilities are given; the arg-max comparison's accuracy where given."""
    argmax = digits = None
    if a_le_b_argmax is not None:
        argmax = float(np.mean(np.asarray(a_le_b_argmax) == pairs.target))
    if digit_a_probs is not None:
        correct = np.concatenate([np.argmax(digit_a_probs, -1) == pairs.classes[:, 0],
                                  np.argmax(digit_b_probs, -1) == pairs.classes[:, 1]])
        digits = float(np.mean(correct))
    return Scores(float(np.mean(np.asarray(a_le_b) == pairs.target)), argmax, digits)


def score_outputs(out: dict, pairs: PairSet) -> Scores:
    """``score`` of a model's named outputs (``pair``, ``pair_argmax``, ``digit_a``, ``digit_b``)."""
    return score(pairs, out["pair"].argmax(-1), out.get("digit_a"), out.get("digit_b"),
                 out["pair_argmax"].argmax(-1) if "pair_argmax" in out else None)


def cross_entropy(probs: np.ndarray, target: np.ndarray) -> float:
    p = np.clip(probs[np.arange(len(target)), target], 1e-7, 1.0)
    return float(-np.mean(np.log(p)))


def score_with_losses(out: dict, pairs: PairSet, arch: ArchConfig) -> dict:
    """Accuracies and the training loss (the weighted sum ``compile_model`` minimises): a row of a
    per-epoch test curve, keyed as Keras' history is."""
    row = score_outputs(out, pairs).to_dict()
    loss = 0.0
    if arch.trains_pair_output:
        row["pair_loss"] = cross_entropy(out["pair"], pairs.target)
        loss += arch.pair_loss_weight * row["pair_loss"]
    if "digit_a" in out and arch.aux_loss:
        for key, col in (("digit_a", 0), ("digit_b", 1)):
            row[f"{key}_loss"] = cross_entropy(out[key], pairs.classes[:, col])
            loss += arch.digit_loss_weight * row[f"{key}_loss"]
    row["loss"] = loss
    return row


def summarise(values: list[float]) -> Summary:
    """Mean, sample std (ddof=1, as torch.std which the reports used; 0 for one value), min, max."""
    arr = np.asarray(values, dtype=np.float64)
    return Summary(float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
                   float(arr.min()), float(arr.max()))


def summarise_rounds(rounds: list[Round]) -> RoundsSummary:
    """Mean +- std over rounds of every test score, the seconds and the epochs run."""
    def over(key):
        values = [getattr(r.test, key) for r in rounds]
        return summarise(values) if None not in values else None

    return RoundsSummary(over("pair_accuracy"), summarise([r.seconds for r in rounds]),
                         summarise([r.epochs_run for r in rounds]), over("digit_accuracy"),
                         over("pair_argmax_accuracy"))


def history_rows(history: dict, single_output: bool) -> list[dict]:
    """Keras' per-epoch history as rows; a single-output model's "accuracy"/"loss" columns are
    renamed so every history has the same "pair_accuracy" columns."""
    def rename(key):
        if single_output:
            for prefix in ("val_", ""):
                if key == prefix + "accuracy":
                    return prefix + "pair_accuracy"
        return key

    n = len(next(iter(history.values()))) if history else 0
    return [{"epoch": i + 1, **{rename(k): float(v[i]) for k, v in history.items()}} for i in range(n)]


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n: int = 10) -> np.ndarray:
    """Counts[i, j] = how often true digit i was predicted as j."""
    m = np.zeros((n, n), np.int64)
    np.add.at(m, (true, pred), 1)
    return m


def comparator_matrix(model: keras.Model, arch: ArchConfig, train_images: np.ndarray | None = None) -> dict:
    """Report B Figure 2: the trained pair head fed 100 one-hot-like encodings of (i, j).

    For a head on digit LOGITS (v1, v6, siamese2) digit i is encoded as ``low`` everywhere and
    ``high`` at index i, with ``high``/``low`` the mean largest / mean other logit the encoder
    gives on the round's TRAINING pairs (10 / 0 without images). For v5 the head sees softmax
    probabilities, so the encoding is one-hot.

    Returns:
      {"decision": 10x10 list, 1 where the head says class 1 (i <= j); "probability": P(i <= j);
       "agreement": share of the 100 cells equal to the ideal matrix; "high", "low"}.
    """
    concat = COMPARATOR_HEADS.get(arch.head)
    if concat is None or not arch.siamese:
        raise ValueError(f"{arch.name}: head {arch.head!r} has no trainable comparator after the "
                         f"digit outputs; comparator heads: {sorted(COMPARATOR_HEADS)}")
    if arch.head == "softmax_dense":
        high, low = 1.0, 0.0
    elif train_images is not None:
        logits = keras.Model(model.inputs, model.get_layer(concat).output)([train_images], training=False)
        logits = np.asarray(logits).reshape(-1, 10)
        top = logits.max(-1)
        high = float(top.mean())
        low = float((logits.sum(-1) - top).mean() / 9)
    else:
        high, low = 10.0, 0.0
    i, j = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    codes = np.full((100, 20), low, np.float32)
    codes[np.arange(100), i.ravel()] = high
    codes[np.arange(100), 10 + j.ravel()] = high
    x = codes
    for name in ("head_hidden", "pair_logits", "pair_logits_relu"):
        try:
            layer = model.get_layer(name)
        except ValueError:
            continue
        x = layer(x)
    probs = np.asarray(keras.ops.softmax(x, axis=-1))[:, 1].reshape(10, 10)
    decision = (probs > 0.5).astype(int)
    ideal = (i <= j).astype(int)
    return {"decision": decision.tolist(), "probability": probs.round(4).tolist(),
            "agreement": float(np.mean(decision == ideal)), "high": high, "low": low}

"""What ``model.fit`` reads: targets keyed by output name, the tf.data pipeline of a round's
pairs, and the sampler that forms fresh pairs every epoch."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from . import threads
from .config import ArchConfig
from .data import PairSet, pair_target
from .models import averaged_output


def targets_for(output_names, pairs: PairSet) -> dict:
    """The target of each named output; an ensemble member's outputs ("digit_a_1", "pair_0", ...)
    have the target of the output they are averaged into."""
    targets = {"pair": pairs.target, "pair_argmax": pairs.target,
               "digit_a": pairs.classes[:, 0], "digit_b": pairs.classes[:, 1]}
    return {name: targets[averaged_output(name)] for name in output_names}


def pair_dataset(pairs: PairSet, output_names, batch_size: int, seed: int | None = None) -> tf.data.Dataset:
    """An in-memory tf.data pipeline, cached; with ``seed`` it reshuffles every epoch,
    deterministically. About 0.2 s per epoch cheaper than handing ``fit`` numpy arrays, which
    it re-wraps every epoch. Its private thread pool keeps to the process's budget (``threads``)."""
    ds = tf.data.Dataset.from_tensor_slices((pairs.images, targets_for(output_names, pairs))).cache()
    if seed is not None:
        ds = ds.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(threads.dataset_options())


def fit_inputs(model: keras.Model, arch: ArchConfig, fit: PairSet, val: PairSet | None, seed: int) -> dict:
    """The data keyword arguments of ``model.fit`` for one round: the fitted pairs (a fresh
    ``PairSampler`` where the architecture forms new pairs every epoch) and the validation pairs."""
    if arch.resample_pairs or arch.swap_pairs:
        data = {"x": PairSampler(fit, model.output_names, arch.batch_size, arch.resample_pairs,
                                 arch.swap_pairs, seed=seed)}
    else:
        data = {"x": pair_dataset(fit, model.output_names, arch.batch_size, seed), "shuffle": False}
    if val is not None:
        data["validation_data"] = pair_dataset(val, model.output_names, arch.batch_size)
    return data


class PairSampler(keras.utils.PyDataset):
    """Training batches that use the digit classes to their fullest.

    resample: every epoch the training digits (both of every training pair) are shuffled and
      paired anew; the target is recomputed from their classes (ties are 1).
    swap: every epoch, each pair is presented as (b, a) with probability 1/2, target 1[b <= a].
    Only the training pairs' own digits are used; validation and test digits never enter.
    """

    def __init__(self, pairs: PairSet, output_names, batch_size: int, resample: bool, swap: bool,
                 seed: int):
        super().__init__()
        self.digits = np.concatenate([pairs.images[..., 0], pairs.images[..., 1]])  # 2N x 14 x 14
        self.labels = np.concatenate([pairs.classes[:, 0], pairs.classes[:, 1]])
        self.n = len(pairs)
        self.output_names, self.batch_size = list(output_names), batch_size
        self.resample, self.swap = resample, swap
        self.rng = np.random.default_rng([seed, 1])
        self.on_epoch_end()

    def on_epoch_end(self):
        if self.resample:
            index = self.rng.permutation(2 * self.n).reshape(self.n, 2)
        else:
            index = np.stack([np.arange(self.n), np.arange(self.n) + self.n], axis=1)
        if self.swap:  # each pair in either order with probability 1/2; the target follows
            flip = self.rng.random(self.n) < 0.5
            index[flip] = index[flip, ::-1]
        self.index = index[self.rng.permutation(len(index))]

    def __len__(self):
        return -(-len(self.index) // self.batch_size)

    def __getitem__(self, i):
        index = self.index[i * self.batch_size:(i + 1) * self.batch_size]
        images = np.stack([self.digits[index[:, 0]], self.digits[index[:, 1]]], axis=-1)
        classes = self.labels[index]
        pairs = PairSet(images, pair_target(classes), classes)
        return images, targets_for(self.output_names, pairs)

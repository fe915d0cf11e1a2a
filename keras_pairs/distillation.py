"""Training on soft targets: knowledge distillation from a teacher, and mixup of pairs.

The recipe follows Beyer et al., "Knowledge distillation: a good teacher is patient and
consistent" (CVPR 2022): teacher and student see the SAME view of every digit (the student's own
random augmentation, then mixup of two pairs), and the student matches the teacher's function
there, i.e. its digit probabilities and its P(a <= b), with cross-entropy to those soft targets.
The teacher is trained first in the round, on the same pairs; only the round's training digits
reach either model.

Without a teacher the same trainer fits the mixed labels: that is the student trained alone on
the same schedule, the ablation of the distillation.

``SoftTargetTrainer`` wraps the student for ``fit`` only. Evaluation, saving and export use the
student model itself: the teacher is never part of it.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from .config import ArchConfig
from .models import AUGMENT_LAYERS, argmax_a_le_b, digit_encoders, prob_a_le_b


class SoftTargetTrainer(keras.Model):
    """Fits ``student`` (a siamese model with the probabilistic head) on soft targets.

    Every training step: both digits of each pair take the student encoder's random augmentation;
    with ``arch.mixup`` each pair is mixed with another pair of the batch (both digits by the
    same share); the targets are the frozen ``teacher``'s digit probabilities and P(a <= b) on
    exactly these views, or without a teacher the labels mixed by the same shares. The loss is the
    cross-entropy of the student's digit_a, digit_b and pair outputs to those targets.

    Called in inference mode (validation during ``fit``) it is the student, with the student's
    compiled losses and metrics.
    """

    def __init__(self, student: keras.Model, arch: ArchConfig, teacher: keras.Model | None = None,
                 seed: int | None = None):
        super().__init__(name=f"{student.name}_trainer")
        self.student, self.teacher, self.mixup = student, teacher, arch.mixup
        (encoder,) = digit_encoders(student)
        # The encoder after its augmentation layers: the views are made once and shared with the teacher.
        self.augment = [encoder.get_layer(n) for n in AUGMENT_LAYERS if n in {l.name for l in encoder.layers}]
        self.body = keras.Model(encoder.get_layer("conv1").input, encoder.outputs, name="student_body")
        if teacher is not None:
            teacher.trainable = False
        self.mix_seed = keras.random.SeedGenerator(seed)

    def call(self, pairs, training=False):
        return self.student(pairs, training=False)

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """The student's weights only (checkpoints during ``fit``): they load into the student model."""
        return self.student.save_weights(filepath, overwrite=overwrite, **kwargs)

    def training_views(self, pairs):
        """The step's views of each pair (N x 14 x 14 x 2) and the mixing (share, partner index)."""
        n = ops.shape(pairs)[0]
        digits = ops.concatenate([pairs[..., 0:1], pairs[..., 1:2]], axis=0)  # a's, then b's
        for layer in self.augment:
            digits = layer(digits, training=True)
        views = ops.concatenate(ops.split(digits, 2, axis=0), axis=-1)
        if not self.mixup:
            return views, None, None
        share = keras.random.beta((n, 1), self.mixup, self.mixup, seed=self.mix_seed)
        partner = keras.random.shuffle(ops.arange(n), seed=self.mix_seed)
        s = ops.reshape(share, (-1, 1, 1, 1))
        return s * views + (1.0 - s) * ops.take(views, partner, axis=0), share, partner

    def soft_targets(self, views, targets, share, partner) -> dict:
        """The targets of digit_a, digit_b and pair on ``views``: the teacher's, or mixed labels."""
        if self.teacher is not None:
            out = self.teacher(views, training=False)
            digit_a, digit_b = ops.stop_gradient(out["digit_a"]), ops.stop_gradient(out["digit_b"])
            return {"digit_a": digit_a, "digit_b": digit_b, "pair": prob_a_le_b(digit_a, digit_b)}
        hot = {"digit_a": ops.one_hot(targets["digit_a"], 10), "digit_b": ops.one_hot(targets["digit_b"], 10),
               "pair": ops.one_hot(targets["pair"], 2)}
        if share is None:
            return hot
        return {k: share * v + (1.0 - share) * ops.take(v, partner, axis=0) for k, v in hot.items()}

    def train_step(self, data):
        pairs, targets = data
        views, share, partner = self.training_views(pairs)
        soft = self.soft_targets(views, targets, share, partner)
        with tf.GradientTape() as tape:
            # Both digits through the encoder in one call, as the views were made.
            _, logits = self.body(ops.concatenate([views[..., 0:1], views[..., 1:2]], axis=0), training=True)
            digit_a, digit_b = ops.split(ops.softmax(ops.cast(logits, "float32"), axis=-1), 2, axis=0)
            outputs = {"digit_a": digit_a, "digit_b": digit_b, "pair": prob_a_le_b(digit_a, digit_b)}
            loss = ops.sum([ops.mean(keras.losses.categorical_crossentropy(soft[k], outputs[k]))
                            for k in ("pair", "digit_a", "digit_b")])
        weights = self.body.trainable_weights
        self.optimizer.apply(tape.gradient(loss, weights), weights)
        # As Keras' own train_step: the loss into the model's loss tracker (the metric named "loss"
        # in the public ``metrics``, as Keras' guide to a custom train_step updates it), the
        # compiled metrics (here: on the training views) through compute_metrics.
        next(m for m in self.metrics if m.name == "loss").update_state(loss, sample_weight=ops.shape(pairs)[0])
        outputs["pair_argmax"] = argmax_a_le_b(digit_a, digit_b)
        return self.compute_metrics(pairs, targets, outputs, sample_weight=None)

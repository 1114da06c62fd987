"""Every number a config gives is range- and type-checked: values JSON allows and Python's
floats do not hold (10**400), non-finite floats and booleans where numbers are wanted are
refused with the ValueError of a refused setting, never OverflowError or another exception."""

from __future__ import annotations

import math

import pytest

from models.config_checks import MAX_SIZE, ConfigError, check_int, check_number, finite_float
from models.estimators import make_estimator
from models.gated_config import MAX_LAYERS, GatedNetworkConfig

HOSTILE_NUMBERS = [10**400, -10**400, math.nan, math.inf, -math.inf, True, False, "1", None,
                   [1.0]]
NUMBER_SETTINGS = [("gumbel-st", "temperature"), ("hard-concrete", "temperature"),
                   ("hard-concrete", "gamma"), ("hard-concrete", "zeta"),
                   ("sts", "beta_noise_scale"), ("noisy-rectifier", "sigma"),
                   ("noisy-sigmoid", "sigma"), ("dropout-sigmoid", "keep"),
                   ("reinforce", "decay"), ("reinforce-mean", "decay")]


@pytest.mark.parametrize("value", HOSTILE_NUMBERS, ids=repr)
@pytest.mark.parametrize(("estimator", "setting"), NUMBER_SETTINGS)
def test_a_hostile_number_in_an_estimator_setting_is_a_refused_setting(estimator, setting,
                                                                       value):
    with pytest.raises(ValueError, match=setting) as refusal:
        make_estimator(estimator, 3, **{setting: value})
    assert len(str(refusal.value)) < 300  # a 400-digit number is not repeated


@pytest.mark.parametrize(("estimator", "settings"), [
    ("rloo", {"samples": 10**400}), ("rloo", {"samples": 10**6}), ("rloo", {"samples": True}),
    ("sts", {"beta_noise": [10**400, 1]}), ("sts", {"beta_noise": [1001, 2]}),
    ("sts", {"beta_noise": [True, 2]}),
    # Each finite, but the stretch width zeta - gamma overflows, or -gamma / zeta underflows.
    ("hard-concrete", {"gamma": -1e308, "zeta": 1e308}),
    ("hard-concrete", {"gamma": -1e-320, "zeta": 1e10}),
])
def test_settings_that_size_training_tensors_or_overflow_are_refused(estimator, settings):
    with pytest.raises(ValueError, match="|".join(settings)):
        make_estimator(estimator, 3, **settings)


@pytest.mark.parametrize("value", HOSTILE_NUMBERS, ids=repr)
def test_the_same_numbers_through_a_network_config_are_config_errors(value):
    with pytest.raises(ConfigError, match="temperature"):
        GatedNetworkConfig.from_dict({
            "input_size": 4, "num_classes": 2, "layers": [{"blocks": 2}],
            "estimator": "gumbel-st", "estimator_settings": {"temperature": value}})


@pytest.mark.parametrize("field", ["input_size", "num_classes", "blocks", "block_size",
                                   "gater_hidden"])
@pytest.mark.parametrize("value", [10**400, MAX_SIZE + 1, -1, True, 2.0, math.nan])
def test_sizes_are_integers_within_bounds(field, value):
    config = {"input_size": 4, "num_classes": 2, "layers": [{"blocks": 2}]}
    (config if field in config else config["layers"][0])[field] = value
    with pytest.raises(ConfigError, match=field):
        GatedNetworkConfig.from_dict(config)


def test_layers_are_bounded_and_settings_are_a_mapping():
    layers = [{"blocks": 2}] * (MAX_LAYERS + 1)
    with pytest.raises(ConfigError, match="layers"):
        GatedNetworkConfig.from_dict({"input_size": 4, "num_classes": 2, "layers": layers})
    with pytest.raises(ConfigError, match="estimator_settings"):
        GatedNetworkConfig.from_dict({"input_size": 4, "num_classes": 2, "layers": [{"blocks": 2}],
                                      "estimator_settings": [["temperature", 2.0]]})


def test_the_shared_checks_refuse_what_float_cannot_hold():
    assert finite_float(10**400) is None and finite_float(True) is None
    assert finite_float(2**62) == 2.0**62
    with pytest.raises(ConfigError, match="lr must be a finite number"):
        check_number("lr", 10**400)
    with pytest.raises(ConfigError, match="an integer of 1329 bits"):
        check_int("epochs", 10**400, maximum=10)

"""The configuration is validated once, at construction."""

import dataclasses

import pytest

from onnx2snn import Config, ConfigError, Granularity


@pytest.mark.parametrize("changes,needle", [
    ({"T": 0}, "T=0"), ({"T": -3}, "T=-3"), ({"T": 10**6}, "out of range"), ({"T": 2.5}, "integer"),
    ({"percentile": 0}, "percentile"), ({"percentile": 100.5}, "percentile"),
    ({"percentile": float("nan")}, "finite"), ({"alpha": 1.5}, "alpha"),
    ({"batch_size": 0}, "batch_size"), ({"granularity": "layer"}, "tensor, channel"),
    ({"threads": 0}, "threads"), ({"calib_samples": 0}, "calib_samples"),
    ({"providers": ("NoSuchExecutionProvider",)}, "not available"), ({"phase": 3}, "phase"),
    ({"method": "magic"}, "dual-phase"), ({"search_scales": (0.8, 1.2)}, "must contain 1.0"),
    ({"search_scales": ()}, "non-empty"), ({"search_scales": (1.0, 1.0)}, "distinct"),
    ({"search_alphas": (0.5, 1.5)}, "search_alphas"), ({"search_samples": 0}, "search_samples"),
    ({"search_neurons": 0}, "search_neurons"),
])
def test_invalid_values_raise_config_error(changes, needle):
    with pytest.raises(ConfigError, match=needle):
        Config(**changes)


def test_frozen_and_replace_revalidates():
    config = Config(granularity="channel")
    assert config.granularity is Granularity.CHANNEL
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.T = 4
    assert config.replace(T=4).T == 4
    with pytest.raises(ConfigError):
        config.replace(T=0)


def test_search_grids_are_tuples_of_floats():
    config = Config(search_scales=[1, 0.5], search_alphas=[0.5])
    assert config.search_scales == (1.0, 0.5) and config.search_alphas == (0.5,)
    assert hash(config) == hash(Config(search_scales=(1.0, 0.5), search_alphas=(0.5,)))

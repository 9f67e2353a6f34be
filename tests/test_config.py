"""Config validation: wrong values and unknown keys fail fast, naming the field and what is allowed."""

import pytest

from scalezero.config import ConfigError, available_suites, config_from_dict, load_config, load_suite, save_config, with_overrides


def test_shipped_suites_load():
    assert {"cartpole", "classic", "minatar"} <= set(available_suites())
    minatar = load_suite("minatar")
    assert len(minatar.tasks) == 5 and minatar.suite == "minatar"


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"tasks": ["cartpole"], "train": {"device": "tpu"}}, "train.device = 'tpu' is not allowed; expected one of ('cpu', 'cuda')"),
        ({"tasks": ["cartpole"], "search": {"algorithm": "alphabeta"}}, "search.algorithm"),
        ({"tasks": ["cartpole"], "model": {"embed_dim": 64, "num_heads": 5}}, "model.num_heads"),
        ({"tasks": ["cartpole"], "train": {"discount": 1.5}}, "train.discount = 1.5"),
        ({"tasks": ["cartpole"], "train": {"lerning_rate": 1e-3}}, "unknown key(s) ['lerning_rate'] in train"),
        ({"tasks": ["pong-v9"]}, "tasks[].name: unknown task 'pong-v9'; did you mean atari-pong"),
        ({"tasks": []}, "tasks"),
        ({"tasks": ["cartpole", "cartpole"]}, "distinct task names"),
        ({"tasks": ["cartpole"], "train": {"batch_size": "many"}}, "train.batch_size must be an integer"),
        ({"tasks": ["cartpole"], "colour": "blue"}, "unknown key(s) ['colour'] in config"),
        ({"tasks": ["cartpole"], "model": {"attention_window_steps": 6}, "replay": {"unroll_steps": 3}}, "model.attention_window_steps = 6 is not allowed; expected an integer <= replay.unroll_steps + 1 = 4"),
    ],
)
def test_bad_values_name_the_field(data, needle):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert needle in str(info.value)


def test_unknown_suite_lists_alternatives():
    with pytest.raises(ConfigError, match="unknown suite 'atari999'; did you mean atari8") as error:
        load_suite("atari999")
    assert f"available suites: {', '.join(available_suites())} (or a path" in str(error.value)
    assert "cartpole, classic" in str(error.value)


def test_round_trip_and_overrides(tmp_path):
    config = load_suite("cartpole")
    save_config(config, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == config and again.hash() == config.hash()
    changed = with_overrides(config, "train", env_steps=123)
    assert changed.train.env_steps == 123 and changed.hash() != config.hash()
    with pytest.raises(ConfigError, match="train.env_steps"):
        with_overrides(config, "train", env_steps=0)

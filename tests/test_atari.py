"""Atari tasks: registration, spaces and masks, frames, the Atari 100k protocol checked against the
raw ALE driven with the same actions, life-loss episodes in training only, the 27,000-step cap,
human-normalised scores in the report, the image encoder for large frames (MinAtar's unchanged),
and a seeded smoke run of the ``atari_smoke`` suite.

Tests that need the emulator skip when ``ale-py`` (or OpenCV) is not installed."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import torch
from torch import nn

from scalezero.config import ModelConfig, load_suite
from scalezero.model.encoders import ImageEncoder, SimNorm, make_encoders
from scalezero.tasks import available_tasks, get_task, make_layout
from scalezero.tasks.atari import (
    ATARI_GAMES,
    FRAME_FORMATS,
    FRAME_SKIP,
    MAX_EPISODE_FRAMES,
    MAX_EPISODE_STEPS,
    AtariEnv,
    atari_tasks,
    human_normalised,
)

GAMES_100K = [
    "alien", "amidar", "assault", "asterix", "bank_heist", "battle_zone", "boxing", "breakout", "chopper_command",
    "crazy_climber", "demon_attack", "freeway", "frostbite", "gopher", "hero", "jamesbond", "kangaroo", "krull",
    "kung_fu_master", "ms_pacman", "pong", "private_eye", "qbert", "road_runner", "seaquest", "up_n_down",
]  # fmt: skip


@pytest.fixture(scope="module")
def ale_py():
    """The ale_py module (the test skips without it, or without OpenCV)."""
    pytest.importorskip("cv2", exc_type=ImportError)
    return pytest.importorskip("ale_py", exc_type=ImportError)


def _raw_ale(ale_py, game: str, seed: int):
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", seed)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(ale_py.roms.get_rom_path(game))
    return ale


# --- registration (no emulator needed) ---------------------------------------------------------


def test_the_26_games_are_registered_in_every_frame_format():
    assert sorted(ATARI_GAMES) == sorted(GAMES_100K)
    names = set(available_tasks())
    for game in GAMES_100K:
        for suffix, (grey, size) in FRAME_FORMATS.items():
            spec = get_task(f"atari-{game}{suffix}").spec
            assert spec.obs_kind == "image" and spec.obs_shape == (1 if grey else 3, size, size)
            assert spec.num_actions == 18 and spec.legal_actions == ATARI_GAMES[game].minimal_actions
            assert spec.obs_scale == 255 and spec.max_episode_steps == MAX_EPISODE_STEPS == 27_000
            assert (
                spec.random_return == ATARI_GAMES[game].random
                and spec.human_return == spec.target_return == ATARI_GAMES[game].human
            )
    assert {"atari-pong", "atari-ms_pacman", "atari-chopper_command", "atari-road_runner", "atari-pong-rgb"} <= names
    assert get_task("atari-pong").spec.obs_shape == (1, 64, 64)  # the default: 64x64 grey
    assert MAX_EPISODE_STEPS * FRAME_SKIP == MAX_EPISODE_FRAMES == 108_000


def test_registration_needs_no_ale_and_a_missing_package_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # import ale_py now raises ImportError
    tasks = {t.spec.name: t for t in atari_tasks()}
    assert len(tasks) == 26 * len(FRAME_FORMATS)
    with pytest.raises(ImportError, match=r"pip install ale-py"):
        tasks["atari-pong"].make_env(0)


def test_layout_masks_are_the_minimal_action_sets():
    names = ["atari-pong", "atari-breakout", "atari-alien", "atari-freeway"]
    layout = make_layout([get_task(n).spec for n in names])
    assert layout.num_actions == 18 and layout.obs_shapes == {"image": (1, 64, 64)} and layout.obs_scales == {"image": 255.0}
    for row, name in zip(layout.action_masks, names):
        assert np.flatnonzero(row).tolist() == list(ATARI_GAMES[name.split("-", 1)[1]].minimal_actions)
    assert layout.action_masks[1].sum() == 4 and layout.action_masks[2].all() and layout.action_masks[3].sum() == 3
    mixed = make_layout([get_task("atari-pong").spec, get_task("atari-boxing-rgb").spec])  # grey + RGB: channels padded
    assert mixed.obs_shapes == {"image": (3, 64, 64)}
    with pytest.raises(ValueError, match="share height and width"):
        make_layout([get_task("atari-pong").spec, get_task("atari-pong-grey96").spec])


def test_human_normalised_arithmetic():
    assert human_normalised(-20.7, "pong") == 0.0 and human_normalised(14.6, "pong") == pytest.approx(1.0)
    assert human_normalised(0.0, "pong") == pytest.approx(20.7 / 35.3)
    assert human_normalised(7127.7 * 2 - 227.8, "alien") == pytest.approx(2.0)
    with pytest.raises(KeyError, match="no reference scores for 'tetris'"):
        human_normalised(1.0, "tetris")


# --- the emulator -------------------------------------------------------------------------------


def test_minimal_action_table_matches_ale(ale_py):
    for game in GAMES_100K:
        ale = _raw_ale(ale_py, game, 0)
        assert tuple(int(a.value) for a in ale.getMinimalActionSet()) == ATARI_GAMES[game].minimal_actions, game


@pytest.mark.parametrize("suffix", list(FRAME_FORMATS))
def test_frame_format_dtype_and_render(ale_py, suffix):
    task = get_task(f"atari-breakout{suffix}")
    env = task.make_env(3)
    obs = env.reset()
    assert obs.shape == task.spec.obs_shape and obs.dtype == np.uint8 and obs.flags.c_contiguous
    assert 0 < obs.max() <= 255
    obs, reward, terminated, truncated = env.step(1)
    assert obs.shape == task.spec.obs_shape and obs.dtype == np.uint8
    assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
    frame = env.render()
    assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8 and frame.any()
    with pytest.raises(ValueError, match="ALE action id in 0..17"):
        env.step(18)
    env.close()


def test_steps_match_the_raw_ale_with_the_same_actions(ale_py):
    """Frame skip 4 with summed rewards, max-pooled last two frames, no-op starts, game over."""
    import cv2

    env = get_task("atari-ms_pacman").make_eval_env(11)
    obs = env.reset()
    ale = _raw_ale(ale_py, "ms_pacman", 11)
    ale.reset_game()
    assert 1 <= env.noops <= 30
    for _ in range(env.noops):
        ale.act(0)

    def expected(frames):
        pooled = np.maximum(frames[-2], frames[-1]) if len(frames) == FRAME_SKIP else frames[-1]
        return cv2.resize(pooled, (64, 64), interpolation=cv2.INTER_AREA)[None]

    np.testing.assert_array_equal(obs, expected([ale.getScreenGrayscale()]))
    rng = np.random.default_rng(0)
    legal = ATARI_GAMES["ms_pacman"].minimal_actions
    total, scoring_steps = 0.0, 0
    for step in range(5_000):
        action = int(rng.choice(legal))
        obs, reward, terminated, truncated = env.step(action)
        raw_reward, frames = 0, []
        for _ in range(FRAME_SKIP):
            raw_reward += ale.act(action)
            frames.append(ale.getScreenGrayscale())
            if ale.game_over():
                break
        assert reward == raw_reward, step
        assert terminated == ale.game_over() and not truncated, step
        np.testing.assert_array_equal(obs, expected(frames), err_msg=f"step {step}")
        total += reward
        scoring_steps += reward > 0
        if terminated:
            break
    assert terminated, "a random Ms. Pac-Man game ends within 5,000 steps"
    assert total > 0 and scoring_steps > 10  # rewards are the game's score, unclipped (10 a pellet)


def test_a_lost_life_ends_a_training_episode_but_not_an_evaluation_game(ale_py):
    task = get_task("atari-ms_pacman")
    train_env, eval_env = task.make_env(5), task.make_eval_env(5)
    np.testing.assert_array_equal(train_env.reset(), eval_env.reset())
    lives = eval_env.lives()
    assert lives >= 2
    rng = np.random.default_rng(1)
    train_return, eval_return, train_episodes, losses = 0.0, 0.0, 0, 0
    for _ in range(5_000):
        action = int(rng.choice(ATARI_GAMES["ms_pacman"].minimal_actions))
        t_obs, t_rew, t_term, _ = train_env.step(action)
        e_obs, e_rew, e_term, _ = eval_env.step(action)
        np.testing.assert_array_equal(t_obs, e_obs)  # the same game underneath
        assert t_rew == e_rew
        train_return += t_rew
        eval_return += e_rew
        lost = eval_env.lives() < lives
        losses += lost
        lives = eval_env.lives()
        assert t_term == (lost or e_term)
        if t_term:
            train_episodes += 1
            if e_term:
                break
            steps_before = train_env.game_steps
            np.testing.assert_array_equal(train_env.reset(), t_obs)  # the game goes on: no restart, no no-ops
            assert train_env.game_steps == steps_before and train_env.lives() == lives
        else:
            assert not e_term
    assert e_term and losses >= 2 and train_episodes == losses  # one training episode per life
    assert train_return == eval_return  # life-episodes add up to the game's score
    assert train_env.reset().shape == (1, 64, 64) and train_env.game_steps == 0  # after game over: a new game


def test_the_episode_cap_truncates_the_game_across_lives(ale_py):
    assert AtariEnv("pong", 0).max_episode_steps == 27_000
    env = AtariEnv("pong", 0, max_episode_steps=30)
    env.reset()
    for step in range(1, 31):
        _, _, terminated, truncated = env.step(0)
        assert not terminated and truncated == (step == 30)
    env.reset()
    assert env.game_steps == 0
    # Training copies count the whole game's steps, not one life's: find the first lost life...
    probe = AtariEnv("ms_pacman", 2, terminal_on_life_loss=True)
    probe.reset()
    first_loss = next(s for s in range(1, 5_000) if probe.step(0)[2])
    # ...and cap the game 5 steps after it.
    env = AtariEnv("ms_pacman", 2, terminal_on_life_loss=True, max_episode_steps=first_loss + 5)
    env.reset()
    flags = [env.step(0)[2:] for _ in range(first_loss)]
    assert flags[-1] == (True, False) and not any(t or u for t, u in flags[:-1])
    env.reset()  # the same game continues
    flags = [env.step(0)[2:] for _ in range(5)]
    assert flags[-1] == (False, True) and not any(t or u for t, u in flags[:-1])
    env.reset()
    assert env.game_steps == 0  # a truncated game restarts


# --- the image encoder -------------------------------------------------------------------------


class _EncoderBefore(nn.Module):
    """The image encoder as it was before large frames: conv3x3, conv3x3 stride 2, Linear."""

    def __init__(self, obs_shape, channels, embed_dim, group):
        super().__init__()
        c, h, w = obs_shape
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels, kernel_size=3, padding=1), nn.GELU(),
            nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1), nn.GELU(), nn.Flatten(),
        )  # fmt: skip
        self.proj = nn.Linear(2 * channels * ((h + 1) // 2) * ((w + 1) // 2), embed_dim)
        self.norm = SimNorm(group)

    def forward(self, obs):
        return self.norm(self.proj(self.conv(obs.float())))


def test_minatar_encoder_is_unchanged():
    torch.manual_seed(0)
    before = _EncoderBefore((10, 10, 10), 32, 128, 8)
    torch.manual_seed(0)
    now = ImageEncoder((10, 10, 10), 32, 128, SimNorm(8))
    old, new = before.state_dict(), now.state_dict()
    assert list(new) == ["conv.0.weight", "conv.0.bias", "conv.2.weight", "conv.2.bias", "proj.weight", "proj.bias"] == list(old)
    for name in old:
        assert torch.equal(old[name], new[name]), name
    assert [type(m) for m in now.conv] == [type(m) for m in before.conv]
    x = (torch.rand(5, 10, 10, 10) > 0.7).to(torch.uint8)
    assert torch.equal(now(x), before(x))
    # Built for the MinAtar suite (obs_scale 1), the encoder is the same net and does not rescale.
    from scalezero.training.loop import resolve_tasks

    _, layout = resolve_tasks(load_suite("minatar"))
    enc = make_encoders(ModelConfig(), layout)["image"]
    assert enc.obs_scale == 1.0 and {k: v.shape for k, v in enc.state_dict().items()} == {k: v.shape for k, v in old.items()}


def test_conv_max_spatial_keeps_a_minatar_grid_whole():
    enc = ImageEncoder((10, 10, 10), 32, 128, SimNorm(8), max_spatial=10)
    assert [m.stride for m in enc.conv if isinstance(m, torch.nn.Conv2d)] == [(1, 1), (1, 1)]
    assert enc.proj.in_features == 64 * 10 * 10
    # Each cell reaches the Linear: moving one object by one cell changes the latent.
    x = torch.zeros(2, 10, 10, 10)
    x[0, 3, 4, 4] = 1.0
    x[1, 3, 4, 5] = 1.0
    out = enc(x)
    assert out.shape == (2, 128) and not torch.allclose(out[0], out[1])
    from scalezero.training.loop import resolve_tasks

    _, layout = resolve_tasks(load_suite("minatar"))
    assert make_encoders(ModelConfig(conv_max_spatial=10), layout)["image"].proj.in_features == 64 * 10 * 10
    assert ImageEncoder((1, 64, 64), 32, 128, SimNorm(8), max_spatial=16).proj.in_features == 64 * 16 * 16
    with pytest.raises(ValueError, match="model.conv_max_spatial"):
        ModelConfig(conv_max_spatial=0).validate()


def test_large_frames_are_downsampled_to_at_most_8x8_and_rescaled():
    enc = ImageEncoder((1, 64, 64), 32, 128, SimNorm(8), obs_scale=255.0)
    assert enc.proj.in_features == 64 * 8 * 8
    assert sum(p.numel() for p in enc.parameters()) < 1_000_000
    assert ImageEncoder((3, 96, 96), 32, 128, SimNorm(8)).proj.in_features == 64 * 6 * 6
    x = torch.randint(0, 256, (3, 1, 64, 64), dtype=torch.uint8)
    out = enc(x)
    assert out.shape == (3, 128) and torch.isfinite(out).all()
    unscaled = ImageEncoder((1, 64, 64), 32, 128, SimNorm(8), obs_scale=1.0)
    unscaled.load_state_dict(enc.state_dict())  # no buffer: the scale is not part of the weights
    torch.testing.assert_close(unscaled(x.float() / 255.0), out)
    layout = make_layout([get_task("atari-pong").spec])
    assert make_encoders(ModelConfig(), layout)["image"].obs_scale == 255.0


# --- training and the report -------------------------------------------------------------------


def test_atari_smoke_suite_trains_and_reports_human_normalised_scores(ale_py, tmp_path):
    from scalezero.report import write_report
    from scalezero.training.loop import train

    config = load_suite("atari_smoke")
    assert [t.name for t in config.tasks] == ["atari-pong", "atari-breakout"]
    run = tmp_path / "run"
    train(config, run, show_progress=False)
    summary = json.loads((run / "metrics.json").read_text())["summary"]
    assert summary["env_steps_per_task"] == {"atari-pong": 200, "atari-breakout": 200}
    assert summary["updates"] > 0
    final = {task: r["return_mean"] for task, r in summary["final_eval"].items()}
    assert set(final) == {"atari-pong", "atari-breakout"}
    md = (write_report(run, out=tmp_path / "report").parent / "report.md").read_text()
    assert "human-normalised" in md
    scores = [human_normalised(final["atari-pong"], "pong"), human_normalised(final["atari-breakout"], "breakout")]
    assert re.search(rf"\| atari-pong \| [^|]+ \|[^\n]*\| {scores[0]:.2f} \|", md)
    assert f"mean {np.mean(scores):.2f}, median {np.median(scores):.2f}" in md

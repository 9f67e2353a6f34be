"""TextWorld games through the task adapter: a game made inside the test run, legal commands
equal to TextWorld's admissible commands at every step, the walkthrough's score, the shipped
levels as tasks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("textworld", reason="TextWorld tasks need textworld==1.7.0 (in the dev extras)")

from scalezero.tasks import get_task, task_families, words
from scalezero.tasks.textworld import OBS_LEN, TW_LEVELS, TextWorldEnv, TWLevel, game_file

SMALL = TWLevel(rooms=2, objects=3, quest_length=2, parallel_quests=2, seed=7, max_steps=40, max_commands=64, max_score=2, random_return=0.0)


@pytest.fixture(scope="module")
def small_game(tmp_path_factory):
    import os

    old = os.environ.get("SCALEZERO_TEXTWORLD_DIR")
    os.environ["SCALEZERO_TEXTWORLD_DIR"] = str(tmp_path_factory.mktemp("tw-cache"))
    try:
        yield game_file(SMALL, name="small")
    finally:
        if old is None:
            del os.environ["SCALEZERO_TEXTWORLD_DIR"]
        else:
            os.environ["SCALEZERO_TEXTWORLD_DIR"] = old


def test_a_made_game_is_cached_and_reused(small_game):
    assert small_game.exists() and small_game.parent.name.startswith("small-")
    stamp = small_game.stat().st_mtime_ns
    assert game_file(SMALL, name="small") == small_game and small_game.stat().st_mtime_ns == stamp  # not made again
    assert not [p for p in small_game.parent.parent.iterdir() if p.name.startswith(".")]  # no half-made folder left


def test_legal_actions_are_textworld_admissible_commands_at_every_step(small_game):
    env = TextWorldEnv(small_game, SMALL.max_steps, SMALL.max_commands, name="small")
    assert list(env.commands) == sorted(env.commands) and len(env.commands) <= SMALL.max_commands
    rng = np.random.default_rng(0)
    steps = 0
    for _ in range(3):
        obs, done = env.reset(), False
        while not done:
            legal = env.legal_actions()
            assert legal.shape == (SMALL.max_commands,) and not legal[len(env.commands) :].any()
            assert sorted(env.commands[i] for i in np.flatnonzero(legal)) == sorted(env.admissible_commands())
            assert obs.shape == (OBS_LEN,) and obs.dtype == np.int64
            assert words.token_count(env.text) <= OBS_LEN  # nothing truncated
            obs, reward, term, trunc = env.step(int(rng.choice(np.flatnonzero(legal))))
            assert reward in (0.0, 1.0)
            done, steps = term or trunc, steps + 1
    assert steps >= 10
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)
    env.reset()
    with pytest.raises(ValueError, match="not a command id"):
        env.step(len(env.commands))


def test_the_walkthrough_reaches_the_max_score(small_game):
    env = TextWorldEnv(small_game, SMALL.max_steps, SMALL.max_commands, name="small")
    assert env.max_score == SMALL.max_score
    env.reset()
    total, term = 0.0, False
    for command in env.walkthrough:
        assert env.legal_actions()[env.commands.index(command)], command
        _, reward, term, _ = env.step(env.commands.index(command))
        total += reward
    assert total == env.max_score and term
    assert "won" in env.transcript()
    # Deterministic: the same commands play out the same way.
    first = env.reset()
    assert np.array_equal(first, env.reset())


def test_the_shipped_levels_are_registered_tasks():
    assert task_families()["textworld"] == [f"textworld-{lv}" for lv in sorted(TW_LEVELS)]
    spec = get_task("textworld-easy").spec
    assert spec.obs_kind == "text" and spec.obs_shape == (OBS_LEN,) and spec.target_return == TW_LEVELS["easy"].max_score
    env = get_task("textworld-easy").make_env(0)  # made (or taken from the cache) and checked against TW_LEVELS
    env.reset()
    assert env.legal_actions().shape == (spec.num_actions,)


def test_hashed_word_ids_are_stable():
    ids = words.encode("You see a Box.", 8)
    assert ids.tolist()[:5] == [words.word_id(w) for w in ("you", "see", "a", "box", ".")] and ids[5:].tolist() == [0, 0, 0]
    assert all(words.FIRST_ID <= words.word_id(w) < words.VOCAB_SIZE for w in ("a", "zork", "9"))
    assert words.word_id("box") == 2 + int.from_bytes(__import__("hashlib").blake2b(b"box", digest_size=8).digest(), "little") % (words.VOCAB_SIZE - 2)


# -- Jericho ---------------------------------------------------------------------------------
from pathlib import Path

GAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "jericho"
needs_905 = pytest.mark.skipif(not (GAMES / "905.z5").is_file(), reason=f"the Jericho game 9:05 is not at {GAMES / '905.z5'} (not downloadable at test time)")


@needs_905
def test_905_walkthrough_through_the_adapter_scores_1_and_each_command_is_legal():
    from scalezero.tasks.jericho import make_jericho_env

    env = make_jericho_env("905", game_dir=str(GAMES))
    env.reset()
    walkthrough, total, found, literal = env.walkthrough(), 0.0, 0, 0
    for command in walkthrough:
        assert env.legal_actions().sum() == len(env.legal_commands()) >= 1
        literal += command in env.legal_commands()
        slot = env.same_effect(command)  # "s" is legal as "south"
        assert slot is not None, (command, env.legal_commands())
        found += 1
        _, reward, term, _trunc = env.step(slot)
        total += reward
    assert found == len(walkthrough) == 22 and total == 1.0 and term
    assert literal >= 6  # the rest are legal in Jericho's own words (south for s, put on watch for wear watch)
    assert "won: score 1 of 1" in env.transcript()


@needs_905
def test_905_two_object_candidates_pair_with_something_carried_and_copies_share_commands():
    from scalezero.tasks.jericho import make_jericho_env

    env = make_jericho_env("905", game_dir=str(GAMES))
    env.reset()
    names = env._env._score_object_names(env._tree_objects())
    held = env._held_words()
    templates = env._env.act_gen.templates
    candidates = env._fill_templates(names, held)
    full = env._env.act_gen.generate_actions(names)  # Jericho's own filling: every pair
    assert set(candidates) <= set(full) and len(candidates) < len(full)
    one = [t for t in templates if t.count("OBJ") == 1]
    assert sum(c in candidates for t in one for c in (t.replace("OBJ", n) for n in names)) == len(one) * len(names)
    two = [t for t in templates if t.count("OBJ") == 2]
    pairs = {(t, a, b) for t in two for a in names for b in names if a != b}
    kept = {(t, a, b) for t, a, b in pairs if t.replace("OBJ", a, 1).replace("OBJ", b, 1) in candidates}
    assert kept and all(a in held or b in held for _, a, b in kept)
    assert {(t, a, b) for t, a, b in pairs if a in held or b in held} == kept
    other = make_jericho_env("905", game_dir=str(GAMES), seed=3)
    other.reset()  # the same first state: its commands come from the shared cache
    assert other._cache is env._cache and other.legal_commands() == env.legal_commands()


def test_jericho_game_folder_from_the_suite_or_the_environment(tmp_path, monkeypatch):
    from scalezero.config import ConfigError, config_from_dict
    from scalezero.tasks.jericho import make_jericho_env

    monkeypatch.delenv("SCALEZERO_JERICHO_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"needs the game file 905.z5: set \$SCALEZERO_JERICHO_DIR"):
        make_jericho_env("905")
    with pytest.raises(FileNotFoundError, match=f"no game file {tmp_path / '905.z5'}"):
        make_jericho_env("905", game_dir=str(tmp_path))
    monkeypatch.setenv("SCALEZERO_JERICHO_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="download the suite themselves"):
        make_jericho_env("905")
    with pytest.raises(ConfigError, match=r"tasks\[jericho-905\].kwargs.*keys drawn from \['game_dir'\]"):
        config_from_dict({"tasks": [{"name": "jericho-905", "kwargs": {"folder": "x"}}]})
    with pytest.raises(ConfigError, match=r"tasks\[cartpole\].kwargs.*takes no options"):
        config_from_dict({"tasks": [{"name": "cartpole", "kwargs": {"game_dir": "x"}}]})


@needs_905
def test_a_suite_entry_passes_the_game_folder_to_the_env():
    from scalezero.config import config_from_dict
    from scalezero.training.loop import resolve_tasks

    config = config_from_dict({"tasks": [{"name": "jericho-905", "kwargs": {"game_dir": str(GAMES)}}]})
    (task,), layout = resolve_tasks(config)
    env = task.make_env(0)
    obs = env.reset()
    assert obs.shape == layout.obs_shapes["text"] and "phone rings" in env.text


def test_text_encoder_shape_and_padding_invariance(small_game):
    import torch

    from scalezero.config import ModelConfig
    from scalezero.model.encoders import TextEncoder, make_encoders
    from scalezero.tasks import make_layout

    torch.manual_seed(0)
    layout = make_layout([get_task(f"textworld-{lv}").spec for lv in TW_LEVELS])
    assert layout.obs_shapes == {"text": (OBS_LEN,)} and layout.num_actions == max(s.max_commands for s in TW_LEVELS.values())
    enc = make_encoders(ModelConfig(embed_dim=128), layout)["text"]
    assert isinstance(enc, TextEncoder) and enc.vocab_size == words.VOCAB_SIZE
    assert sum(p.numel() for p in enc.parameters()) < 300_000
    env = TextWorldEnv(small_game, SMALL.max_steps, SMALL.max_commands)
    first = env.reset()
    obs = np.stack([first, env.step(0)[0], env.step(1)[0], np.zeros(OBS_LEN, np.int64)])
    x = torch.as_tensor(obs)
    out = enc(x)
    assert out.shape == (4, 128) and torch.isfinite(out).all()
    groups = out.view(4, -1, 8).sum(-1)
    torch.testing.assert_close(groups, torch.ones_like(groups))  # SimNorm
    longer = torch.cat([x, torch.zeros(4, 40, dtype=torch.long)], dim=1)
    torch.testing.assert_close(enc(longer), out, rtol=0, atol=1e-6)  # padding changes nothing
    torch.testing.assert_close(enc(x[:1]), out[:1], rtol=0, atol=1e-6)  # a batch with less padding in its columns
    torch.testing.assert_close(enc(x.float()), out)  # ids given as floats
    changed = x.clone()
    changed[0, 5] = words.word_id("garden")
    assert not torch.allclose(enc(changed)[0], out[0])

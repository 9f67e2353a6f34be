"""Text games: generation, rules, rewards, observations, tokenizer and the text encoder."""

import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from scalezero.config import ConfigError
from scalezero.tasks import EnvBatch, get_task, make_layout
from scalezero.tasks.text import LEVELS, OBS_LEN, TEXT_GAMES, TextGameEnv, generate_game, suite_games, tokenizer
from scalezero.tasks.text.baseline import random_legal_return
from scalezero.tasks.text.solver import shortest_solution
from scalezero.tasks.text.world import INVENTORY_VERB, LOCK, LOOK, UNLOCK, World

NAMES = list(TEXT_GAMES)


def _random_states(game, episodes=5, seed=0):
    """States met by random legal play (World objects restored from their snapshots)."""
    env, rng, snaps = TextGameEnv(game), np.random.default_rng(seed), []
    for _ in range(episodes):
        env.reset()
        done = False
        while not done:
            snaps.append(env.world.snapshot())
            legal = np.flatnonzero(env.legal_actions())
            _, _, terminated, truncated = env.step(int(rng.choice(legal)))
            done = terminated or truncated
    return snaps


# ------------------------------------------------------------------ generation
@pytest.mark.parametrize("level", list(LEVELS))
def test_generation_is_deterministic_per_seed(level):
    a, b = generate_game(level, 11), generate_game(level, 11)
    assert a == b and a.command_texts == b.command_texts
    others = [generate_game(level, s) for s in range(12, 16)]
    assert any(o.rooms != a.rooms or o.items != a.items for o in others)


def test_suite_games_are_fixed():
    """The suite's games are pinned (same on every machine): a change of the generator that
    alters them shows up here."""
    games = suite_games()
    assert [len(g.commands) for g in games.values()] == [12, 25, 44, 72]
    assert [g.max_return for g in games.values()] == [3.0, 5.0, 6.0, 9.0]
    assert games["text-easy"].rooms == ("garage", "pantry")
    digests = [
        hashlib.sha256(repr((g.rooms, g.exits, g.items, g.openables, g.goals, g.command_texts)).encode()).hexdigest()[:12]
        for g in games.values()
    ]
    assert digests == ["b21c02c75138", "6f5bd9f81dc6", "69fbc14fcc94", "8b866b2dcff2"]


def test_unknown_level_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown text-game level 'impossible'; levels: easy, medium, hard, expert"):
        generate_game("impossible", 0)


# --------------------------------------------------------- solvability, difficulty
def test_every_suite_game_is_won_by_its_shortest_solution_with_the_maximal_return():
    lengths = []
    for name, game in suite_games().items():
        plan = shortest_solution(game)
        assert plan is not None, name
        env = TextGameEnv(game)
        env.reset()
        total, terminated = 0.0, False
        for i, a in enumerate(plan):
            assert env.legal_actions()[a], (name, i, game.commands[a].text)
            _, reward, terminated, truncated = env.step(a)
            total += reward
            assert terminated == (i == len(plan) - 1) and not truncated
        assert total == game.max_return == get_task(name).spec.target_return
        assert len(plan) < game.max_steps
        lengths.append(len(plan))
    assert lengths == sorted(lengths) and len(set(lengths)) == 4, lengths  # difficulty grows
    assert lengths[-1] >= 4 * lengths[0]


@pytest.mark.parametrize("level", ["easy", "medium"])
def test_pruned_solver_finds_the_true_shortest_length(level):
    for seed in range(3):
        game = generate_game(level, seed)
        assert len(shortest_solution(game)) == len(shortest_solution(game, prune=False))


@pytest.mark.parametrize("level", list(LEVELS))
def test_generated_games_are_solvable_and_every_gate_is_needed(level):
    for seed in range(5):
        game = generate_game(level, seed)
        assert shortest_solution(game) is not None, (level, seed)
        for gate in game.gates if seed < 2 else ():  # without its key nothing wins
            key = game.openables[gate].key
            drop = tuple(c for c in game.commands if not (c.verb in (UNLOCK, LOCK) and c.b == key))
            assert shortest_solution(replace(game, commands=drop)) is None, (level, seed, gate)


def test_random_play_is_far_from_the_maximum():
    """The recorded random returns are below the target (so learning has something to show)."""
    for name, (_, _, random_return) in TEXT_GAMES.items():
        spec = get_task(name).spec
        assert spec.random_return == random_return < 0.6 * spec.target_return
    measured = random_legal_return(suite_games()["text-easy"], episodes=300, seed=1)
    assert abs(measured - TEXT_GAMES["text-easy"][2]) < 0.3


# ---------------------------------------------------------------- legal actions
@pytest.mark.parametrize("name", NAMES)
def test_legal_actions_are_exactly_the_commands_that_change_the_state(name):
    game = suite_games()[name]
    world = World(game)
    for snap in _random_states(game, episodes=2)[::3]:
        world.restore(snap)
        mask = world.legal_mask()
        for i, cmd in enumerate(game.commands):
            world.restore(snap)
            world.won = False
            events, reward = world.execute(cmd)
            changed = world.snapshot() != snap
            if cmd.verb in (LOOK, INVENTORY_VERB):
                assert mask[i] and not changed
            else:
                assert mask[i] == changed, (cmd.text, events)
            if not mask[i]:
                assert reward == 0 and len(events) == 1 and events[0][0] in tokenizer.lexicon.SENTENCES


def test_illegal_command_is_reported_and_changes_nothing():
    env = TextGameEnv(suite_games()["text-hard"])
    obs0 = env.reset()
    locked = next(i for i, c in enumerate(env.commands) if c.startswith("unlock"))
    assert not env.legal_actions()[locked]
    before = env.world.snapshot()
    obs, reward, terminated, truncated = env.step(locked)
    assert reward == 0 and not terminated and not truncated
    assert env.world.snapshot() == before
    assert env.text.startswith(("You don't see", "You don't carry"))
    assert not np.array_equal(obs, obs0)  # the feedback changed, nothing else
    with pytest.raises(ValueError, match="action 999 is not a command id"):
        env.step(999)


# ------------------------------------------------------------ rewards and episodes
def test_win_terminates_and_step_cap_truncates():
    game = suite_games()["text-easy"]
    env = TextGameEnv(game)
    env.reset()
    rewards = [env.step(a)[1] for a in shortest_solution(game)]
    assert rewards[-1] >= 2  # the last goal and the win together
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(0)
    assert "[won: return 3 of 3" in env.transcript()
    env.reset()
    results = [env.step(0) for _ in range(game.max_steps)]  # "look" forever
    assert all(r[1] == 0 and not r[2] for r in results)
    assert [r[3] for r in results] == [False] * (game.max_steps - 1) + [True]


def test_milestones_are_paid_once():
    game = suite_games()["text-medium"]
    env = TextGameEnv(game)
    env.reset()
    goal = next(g for g in game.goals if g.room is not None)
    name = game.items[goal.item].name
    plan = shortest_solution(game)
    take, drop = env.commands.index(f"take {name}"), env.commands.index(f"drop {name}")
    rewards = [env.step(a)[1] for a in plan[: plan.index(take) + 1]]
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0
    assert env.world.player != goal.room
    assert env.step(drop)[1] == 0.0 and env.step(take)[1] == 0.0  # carrying it again pays nothing
    assert env.world.score == 1


# ----------------------------------------------------------------- observations
@pytest.mark.parametrize("name", NAMES)
def test_observations_match_the_spec_and_fit(name):
    task = get_task(name)
    batch = EnvBatch(task, num_envs=2, seed=0)
    assert batch.obs.shape == (2, OBS_LEN) and batch.obs.dtype == np.int64
    assert batch.legal.shape == (2, task.spec.num_actions)
    rng = np.random.default_rng(0)
    longest = 0
    for _ in range(200):
        actions = np.array([rng.choice(np.flatnonzero(row)) for row in batch.legal])
        step = batch.step(actions)
        assert step.obs.shape == (2, OBS_LEN) and step.obs.dtype == np.int64
        assert not (step.obs == tokenizer.UNK_ID).any()
        longest = max(longest, int((step.obs != 0).sum(1).max()))
    assert longest < OBS_LEN  # never truncated in random play


def test_observation_text_is_deterministic_and_describes_the_state():
    game = suite_games()["text-medium"]
    a, b = TextGameEnv(game, seed=0), TextGameEnv(game, seed=5)
    np.testing.assert_array_equal(a.reset(), b.reset())
    text = a.text
    assert text.startswith("A new game begins. Your task: ")
    assert f"You are in the {game.rooms[game.start_room]}." in text
    assert "You carry nothing." in text and text.endswith("Score: 0 of 5.")
    for act in shortest_solution(game)[:3]:
        np.testing.assert_array_equal(a.step(act)[0], b.step(act)[0])
    assert a.transcript() == b.transcript()
    assert a.transcript().count("\n> ") == 3


def test_no_unknown_words_in_many_generated_games():
    for level in LEVELS:
        for seed in range(20, 26):
            game = generate_game(level, seed)
            for text in game.command_texts:
                assert tokenizer.UNK_ID not in tokenizer.encode_sentence(text), text
            env, rng = TextGameEnv(game), np.random.default_rng(seed)
            obs = env.reset()
            for _ in range(60):
                assert tokenizer.UNK_ID not in obs, env.text
                obs, _, terminated, truncated = env.step(int(rng.choice(np.flatnonzero(env.legal_actions()))))
                if terminated or truncated:
                    obs = env.reset()


# -------------------------------------------------------------------- tokenizer
def test_tokenizer_round_trip_padding_and_unknown_words():
    text = "You can't go north, Mr Xylophone!"
    assert tokenizer.tokenize(text) == ["you", "can", "'", "t", "go", "north", ",", "mr", "xylophone", "!"]
    ids = tokenizer.encode(text)
    assert ids.shape == (OBS_LEN,) and ids.dtype == np.int64
    n = 10
    assert (ids[n:] == tokenizer.PAD_ID).all() and (ids[:n] != tokenizer.PAD_ID).all()
    assert tokenizer.decode(ids) == "you can ' t go north , <unk> <unk> !"
    known = "You take the red apple from the wooden chest."
    assert tokenizer.decode(tokenizer.encode(known)) == " ".join(tokenizer.tokenize(known))
    short = tokenizer.encode(["You go east.", "You carry nothing."], length=5)
    assert tokenizer.decode(short) == "you go east . you"
    assert tokenizer.VOCAB[:2] == ("<pad>", "<unk>") and len(set(tokenizer.VOCAB)) == tokenizer.VOCAB_SIZE
    assert list(tokenizer.VOCAB[2:]) == sorted(tokenizer.VOCAB[2:])  # deterministic order


# ---------------------------------------------------------------------- encoder
def test_text_encoder_shape_and_padding_invariance():
    from scalezero.config import ModelConfig
    from scalezero.model.encoders import TextEncoder, make_encoders

    torch.manual_seed(0)
    specs = [get_task(n).spec for n in NAMES]
    layout = make_layout(specs)
    assert layout.obs_shapes == {"text": (OBS_LEN,)} and layout.num_actions == 72
    enc = make_encoders(ModelConfig(embed_dim=128), layout)["text"]
    assert isinstance(enc, TextEncoder)
    assert sum(p.numel() for p in enc.parameters()) < 300_000
    env = TextGameEnv(suite_games()["text-hard"])
    obs = np.stack([env.reset(), env.step(2)[0], env.step(3)[0], np.zeros(OBS_LEN, np.int64)])
    x = torch.as_tensor(obs)
    out = enc(x)
    assert out.shape == (4, 128) and torch.isfinite(out).all()
    groups = out.view(4, -1, 8).sum(-1)
    torch.testing.assert_close(groups, torch.ones_like(groups))  # SimNorm
    longer = torch.cat([x, torch.zeros(4, 40, dtype=torch.long)], dim=1)
    torch.testing.assert_close(enc(longer), out, rtol=0, atol=1e-6)
    alone = enc(x[:1])  # a batch with less padding in its columns
    torch.testing.assert_close(alone, out[:1], rtol=0, atol=1e-6)
    torch.testing.assert_close(enc(x.float()), out)  # ids given as floats
    changed = x.clone()
    changed[0, 5] = tokenizer.WORD_TO_ID["garden"]
    assert not torch.allclose(enc(changed)[0], out[0])

"""The agent learns: a seeded, short CartPole run ends far above a random policy (~22)."""

import time

from scalezero.config import load_suite, with_overrides
from scalezero.training.loop import train


def test_cartpole_learns_within_two_minutes(tmp_path):
    config = load_suite("cartpole")
    config = with_overrides(
        config,
        "train",
        env_steps=3_000,
        learning_starts=500,
        eval_every=3_000,
        eval_episodes=8,
        checkpoint_every=3_000,
        seed=0,
    )
    start = time.perf_counter()
    result = train(config, tmp_path / "run", show_progress=False)
    wall = time.perf_counter() - start
    score = result.final_eval["cartpole"]["return_mean"]
    print(f"cartpole after 3,000 env steps: eval return {score:.1f} in {wall:.0f} s")
    assert score >= 100.0, f"eval return {score:.1f} after 3,000 steps; a random policy gets ~22"

"""Does the search choose better than its prior? Monte Carlo action values of a trained MinAtar agent.

    python benchmarks/search_quality.py --runs RUN [RUN ...]            # minutes per run on one core
    python benchmarks/search_quality.py --runs RUN --states 48 --rollouts 16 --horizon 60

For each run (a single-game MinAtar run directory, its latest checkpoint or ``--checkpoint``):

1. **Returns**: greedy episodes that act by the policy prior alone (argmax of the policy logits
   at the root) against greedy episodes that act by the search (the run's own search settings);
   along the search episodes, how well the root value predicts the discounted return that
   followed (correlation over all visited states).
2. **Action values**: at ``--states`` states of greedy play, every legal action's Monte Carlo
   value: the env's state is copied (MinAtar games copy exactly; each copy is re-seeded, so
   sticky actions and the game's own randomness differ between copies), the action is taken,
   then the prior's greedy policy plays for at most ``--horizon`` steps, ``--rollouts`` times
   per action. Against these values: the search's root Q, the one-step model Q through the
   predicted latent (``r + gamma V(z_hat)``) and through the real next latent (``r + gamma
   V(z)``, the env stepped without sticky actions), each as the mean within-state correlation
   over the root's actions. The split-half correlation of the Monte Carlo values themselves
   (two halves of the rollouts) is the ceiling any of them can reach.
3. The Monte Carlo value of the action each chooser takes (prior, search, one-step model) against
   the best and the mean over actions.

Writes ``benchmarks/results/search_quality.json`` (``--out`` for elsewhere).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result


def copy_game(env, seed: int):
    """An exact copy of a MinAtar env's state whose future randomness (sticky actions, the
    game's own draws) comes from ``seed``."""
    twin = copy.deepcopy(env)
    twin._env.random.seed(seed)
    twin._env.env.random.seed(seed + 1)
    return twin


class Agent:
    """The parts of a trained run the measurements need: model, layout, config, one task."""

    def __init__(self, run: Path, checkpoint: Path | None) -> None:
        from scalezero.api import load_agent

        agent = load_agent(run, checkpoint=checkpoint, threads=1)
        if len(agent.tasks) != 1 or not agent.tasks[0].startswith("minatar-"):
            raise SystemExit(f"{run}: search_quality needs a run of one MinAtar game, this one has {agent.tasks}")
        self.model, self.layout, self.config = agent.model, agent.layout, agent.config
        self.spec = agent._tasks[0].spec
        self.game = self.spec.name.removeprefix("minatar-")
        self.num_actions = self.spec.num_actions
        self.gamma = self.config.train.discount

    def history(self, obs: np.ndarray):
        from scalezero.training.acting import ContextHistory

        return ContextHistory(self.layout.pad_obs(0, obs), self.config.train.context_steps, self.layout.action_dim)

    @torch.inference_mode()
    def root(self, history):
        """The model's root inference over each row's context."""
        n, steps = history.actions.shape[:2]
        obs = torch.as_tensor(history.obs.reshape((n * steps,) + history.obs.shape[2:]))
        latents = self.model.encode(obs, self.layout.kind(0)).view(n, steps, -1)
        task = torch.zeros(n, dtype=torch.long)
        return self.model.initial_inference(latents, torch.as_tensor(history.actions[:, :-1]), task, torch.as_tensor(history.valid))

    def prior_actions(self, history) -> np.ndarray:
        return self.root(history).policy_logits[:, : self.num_actions].argmax(1).numpy()

    def search(self, history, rng: np.random.Generator):
        from scalezero.training.acting import search_actions

        return search_actions(self.model, self.layout, {0: history}, self.config.search, self.gamma, rng, explore=False, device=torch.device("cpu")).outputs[0]


def make_envs(agent: Agent, count: int, seed: int) -> list:
    from scalezero.tasks.minatar import MinAtarEnv

    return [MinAtarEnv(agent.game, seed=seed + i) for i in range(count)]


def play(agent: Agent, mode: str, episodes: int, seed: int) -> dict:
    """``episodes`` greedy episodes acting by ``mode`` (``prior`` or ``search``): returns, and
    with ``search`` the root values against the discounted returns that followed."""
    rng = np.random.default_rng(seed)
    envs = make_envs(agent, episodes, seed)
    history = agent.history(np.stack([e.reset() for e in envs]))
    live = np.ones(episodes, bool)
    rewards: list[list[float]] = [[] for _ in range(episodes)]
    values: list[list[float]] = [[] for _ in range(episodes)]
    while live.any():
        rows = np.flatnonzero(live)
        part = history.rows(live)
        if mode == "prior":
            actions = agent.prior_actions(part)
        else:
            out = agent.search(part, rng)
            actions = out.actions
            for j, i in enumerate(rows):
                values[i].append(float(out.search.root_value[j]))
        full = np.zeros(episodes, np.int64)
        full[rows] = actions
        obs = history.obs[:, -1].copy()
        done = np.zeros(episodes, bool)
        for i in rows:
            o, r, term, trunc = envs[i].step(int(full[i]))
            rewards[i].append(r)
            obs[i] = agent.layout.pad_obs(0, o[None])[0]
            if term or trunc:
                live[i], done[i] = False, True
        history.advance(full, obs, done)
    returns = np.asarray([sum(r) for r in rewards])
    result = {"return_mean": float(returns.mean()), "return_se": float(returns.std() / np.sqrt(episodes)), "episodes": episodes}
    if mode == "search":
        following = np.concatenate([discounted_returns(r, agent.gamma) for r in rewards])
        predicted = np.concatenate(values)
        result["value_vs_return_corr"] = correlation(predicted, following)
        result["value_mean"], result["return_that_followed_mean"] = float(predicted.mean()), float(following.mean())
    return result


def discounted_returns(rewards: list[float], gamma: float) -> np.ndarray:
    """``G_t = r_t + gamma G_{t+1}`` for every step of one episode."""
    out = np.zeros(len(rewards))
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


def sample_states(agent: Agent, count: int, seed: int) -> list[dict]:
    """``count`` states met in greedy (search) play, each with a copy of its env, its context and
    what the search and the prior chose there."""
    rng = np.random.default_rng(seed)
    envs = make_envs(agent, 16, seed)
    history = agent.history(np.stack([e.reset() for e in envs]))
    states: list[dict] = []
    step = 0
    while len(states) < count:
        out = agent.search(history, rng)
        prior = agent.prior_actions(history)
        for i in range(len(envs)):
            if step >= 3 and rng.random() < 0.12 and len(states) < count:
                states.append(
                    {
                        "env": copy.deepcopy(envs[i]),
                        "history": history.rows(np.asarray([i])),
                        "search_action": int(out.actions[i]),
                        "search_q": out.search.q_values[i, : agent.num_actions].astype(np.float64),
                        "prior_action": int(prior[i]),
                    }
                )
        obs, done = history.obs[:, -1].copy(), np.zeros(len(envs), bool)
        for i, env in enumerate(envs):
            o, _, term, trunc = env.step(int(out.actions[i]))
            if term or trunc:
                o, done[i] = env.reset(), True
            obs[i] = agent.layout.pad_obs(0, o[None])[0]
        history.advance(out.actions, obs, done)
        step += 1
    return states


def monte_carlo_q(agent: Agent, states: list[dict], rollouts: int, horizon: int, seed: int) -> np.ndarray:
    """``[S, A, rollouts]`` discounted returns: each state's env copied and re-seeded per
    rollout, the action taken, then the prior's greedy policy for at most ``horizon`` steps."""
    from scalezero.training.acting import ContextHistory

    rng = np.random.default_rng(seed)
    num_actions = agent.num_actions
    envs, first, keys = [], [], []
    for s, state in enumerate(states):
        for a in range(num_actions):
            for k in range(rollouts):
                envs.append(copy_game(state["env"], int(rng.integers(2**31 - 2))))
                first.append(a)
                keys.append((s, a, k))
    stack = lambda name: np.concatenate([getattr(states[s]["history"], name) for s, _, _ in keys])
    history = ContextHistory.from_arrays(stack("obs"), stack("actions"), stack("valid"))
    n = len(envs)
    returns, alive, discount = np.zeros(n), np.ones(n, bool), np.ones(n)
    actions = np.asarray(first)
    for step in range(horizon):
        if step > 0:
            actions = agent.prior_actions(history)
        obs = history.obs[:, -1].copy()
        for i in np.flatnonzero(alive):
            o, r, term, _ = envs[i].step(int(actions[i]))
            returns[i] += discount[i] * r
            alive[i] = not term
            obs[i] = agent.layout.pad_obs(0, o[None])[0]
        discount *= agent.gamma
        history.advance(actions, obs, np.zeros(n, bool))
        if not alive.any():
            break
    out = np.zeros((len(states), num_actions, rollouts))
    for (s, a, k), g in zip(keys, returns):
        out[s, a, k] = g
    return out


@torch.inference_mode()
def one_step_q(agent: Agent, state: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(imagined [A], real [A])`` one-step model Q of every action: ``r_hat + gamma V(z_hat)``
    through the model's predicted latent, and ``r + gamma V(z)`` through the encoded real next
    observation (the env stepped without sticky actions), both with the state's real context."""
    num_actions = agent.num_actions
    history = state["history"]
    stacked = type(history).from_arrays(*(np.repeat(getattr(history, k), num_actions, 0) for k in ("obs", "actions", "valid")))
    root = agent.root(stacked)
    task = torch.zeros(num_actions, dtype=torch.long)
    step = agent.model.recurrent_inference(root.cache, torch.arange(num_actions), task)
    imagined = (step.reward + agent.gamma * step.value).numpy()
    rewards, next_obs = [], []
    for a in range(num_actions):
        twin = copy.deepcopy(state["env"])
        twin._env.sticky_action_prob = 0.0
        o, r, _, _ = twin.step(a)
        rewards.append(r)
        next_obs.append(agent.layout.pad_obs(0, o[None])[0])
    after = type(history).from_arrays(stacked.obs.copy(), stacked.actions.copy(), stacked.valid.copy())
    after.advance(np.arange(num_actions), np.stack(next_obs), np.zeros(num_actions, bool))
    real = np.asarray(rewards) + agent.gamma * agent.root(after).value.numpy()
    return imagined, real


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN where either side is constant."""
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-9 and b.std() > 1e-9 else float("nan")


def within_state_corr(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean over states (rows) of the correlation across actions; rows where either side is
    constant are left out (nothing to rank)."""
    values = [c for p, a in zip(predicted, actual) if not np.isnan(c := correlation(p, a))]
    return float(np.mean(values)) if values else float("nan")


def measure(run: Path, checkpoint: Path | None, states: int, rollouts: int, horizon: int, episodes: int, seed: int) -> dict:
    agent = Agent(run, checkpoint)
    result = {"run": str(run), "task": agent.spec.name, "prior": play(agent, "prior", episodes, seed), "search": play(agent, "search", episodes, seed)}
    sampled = sample_states(agent, states, seed + 1)
    returns = monte_carlo_q(agent, sampled, rollouts, horizon, seed + 2)
    q_mc = returns.mean(-1)
    half = rollouts // 2
    steps = [one_step_q(agent, s) for s in sampled]
    imagined, real = np.stack([s[0] for s in steps]), np.stack([s[1] for s in steps])
    search_q = np.stack([s["search_q"] for s in sampled])
    rows = np.arange(len(sampled))
    chooses = {
        "prior": np.asarray([s["prior_action"] for s in sampled]),
        "search": np.asarray([s["search_action"] for s in sampled]),
        "one_step_imagined": imagined.argmax(1),
        "one_step_real_latent": real.argmax(1),
    }
    result["action_values"] = {
        "states": len(sampled),
        "rollouts": rollouts,
        "horizon": horizon,
        "corr_with_mc": {
            "search_q": within_state_corr(search_q, q_mc),
            "one_step_imagined": within_state_corr(imagined, q_mc),
            "one_step_real_latent": within_state_corr(real, q_mc),
            "mc_split_half": within_state_corr(returns[..., :half].mean(-1), returns[..., half:].mean(-1)),
        },
        "mc_q_of_choice": {name: float(q_mc[rows, a].mean()) for name, a in chooses.items()},
        "mc_q_best_action": float(q_mc.max(1).mean()),
        "mc_q_mean_over_actions": float(q_mc.mean()),
        "search_agrees_with_prior": float((chooses["search"] == chooses["prior"]).mean()),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="single-game MinAtar run directories")
    parser.add_argument("--checkpoint", help="checkpoint name inside each run (default: the latest)")
    parser.add_argument("--states", type=int, default=48)
    parser.add_argument("--rollouts", type=int, default=16, help="per action and state (even: split in halves)")
    parser.add_argument("--horizon", type=int, default=60)
    parser.add_argument("--episodes", type=int, default=32, help="greedy episodes per chooser")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the JSON here instead of benchmarks/results/search_quality.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for run in args.runs:
        checkpoint = run / "checkpoints" / args.checkpoint if args.checkpoint else None
        results.append(measure(run, checkpoint, args.states, args.rollouts, args.horizon, args.episodes, args.seed))
        r = results[-1]
        corr = r["action_values"]["corr_with_mc"]
        print(
            f"{run}: prior {r['prior']['return_mean']:.2f} / search {r['search']['return_mean']:.2f}; "
            + ", ".join(f"{k} {v:.2f}" for k, v in corr.items()),
            flush=True,
        )
    print("wrote", write_result("search_quality", {"runs": results}, path=args.out))


if __name__ == "__main__":
    main()

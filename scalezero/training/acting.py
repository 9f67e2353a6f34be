"""Choosing actions by search, for every env copy of every task in one batch.

Collection and evaluation both call :func:`search_actions`: observations of all tasks
are encoded per observation kind, the roots of all copies go through one
``initial_inference`` and one batched search (the task of each row is bound inside the
model closure; the search sees only legal-action masks).

Discrete suites search over the suite's action set: the root may only play what is legal
now (the env's ``legal_actions()`` where it has one), nodes below the root anything the task
has. Continuous suites search over ``search.num_samples`` actions drawn from the policy at
every node (Sampled MuZero); the played action is one of the root's draws.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from scalezero.config import SearchConfig
from scalezero.model import ActionSampler, TreeSearchModel, WorldModel
from scalezero.search import Root, SearchOutput, run_search
from scalezero.tasks import SuiteLayout


class ContextHistory:
    """The last ``context_steps`` (observation, action) pairs and the current observation
    of each env copy of one task, padded to the suite's observation shape.

    Arrays: ``obs [n, C+1, *shape]`` (the last slot is the current observation),
    ``actions [n, C+1(, action_dim)]`` (the action taken at each slot, an id or a padded
    vector; the last is not yet known), ``valid [n, C+1]`` (False for slots before the
    episode's start).
    """

    def __init__(self, first_obs: np.ndarray, context_steps: int, action_dim: int = 0) -> None:
        n = first_obs.shape[0]
        self.obs = np.zeros((n, context_steps + 1) + first_obs.shape[1:], dtype=first_obs.dtype)
        if action_dim:
            self.actions = np.zeros((n, context_steps + 1, action_dim), dtype=np.float32)
        else:
            self.actions = np.zeros((n, context_steps + 1), dtype=np.int64)
        self.valid = np.zeros((n, context_steps + 1), dtype=bool)
        self.obs[:, -1] = first_obs
        self.valid[:, -1] = True

    @classmethod
    def from_arrays(cls, obs: np.ndarray, actions: np.ndarray, valid: np.ndarray) -> ContextHistory:
        """A history of given arrays (shapes as in the class doc; the last slot must be valid)."""
        part = object.__new__(cls)
        part.obs, part.actions, part.valid = obs, actions, valid
        return part

    def rows(self, index: np.ndarray) -> ContextHistory:
        """The copies selected by ``index`` (a bool mask or ids), as a separate history."""
        return ContextHistory.from_arrays(self.obs[index], self.actions[index], self.valid[index])

    def advance(self, actions: np.ndarray, next_obs: np.ndarray, done: np.ndarray) -> None:
        """Record the actions taken, shift by one step, and restart the copies whose episode ended."""
        self.actions[:, -1] = actions
        self.obs = np.roll(self.obs, -1, axis=1)
        self.actions = np.roll(self.actions, -1, axis=1)
        self.valid = np.roll(self.valid, -1, axis=1)
        self.obs[:, -1] = next_obs
        self.actions[:, -1] = 0
        self.valid[:, -1] = True
        self.valid[done, :-1] = False


@dataclass
class TaskActions:
    """One task's share of a batched search.

    Attributes:
        search: the search result of its rows (visit counts, policy target over the suite's
            actions, or over the root's candidates in a continuous suite; root values).
        actions: what the model sees as the action taken: ``[n]`` ids, or ``[n, action_dim]``
            vectors padded to the suite's largest action dimension.
        env_actions: what the env receives: ``[n]`` ids, or ``[n, task action_dim]`` vectors.
        candidates: continuous suites: ``[n, K, action_dim]`` the root's candidate actions
            (the policy target is a distribution over them); None otherwise.
        legal: discrete suites: ``[n, suite actions]`` what the root could play (the task's
            static set narrowed by the env's per-step mask; replay keeps it for the policy
            loss); None in continuous suites.
    """

    search: SearchOutput
    actions: np.ndarray
    env_actions: np.ndarray
    candidates: np.ndarray | None = None
    legal: np.ndarray | None = None


@dataclass
class ActResult:
    """Search results split back per task: ``outputs[task_id]``."""

    outputs: dict[int, TaskActions]


def _split(out: SearchOutput, sizes: list[int]) -> list[SearchOutput]:
    bounds = np.cumsum([0] + sizes)
    return [
        SearchOutput(**{f: getattr(out, f)[a:b] for f in ("action", "policy_target", "root_value", "visit_counts", "q_values")})
        for a, b in itertools.pairwise(bounds)
    ]


def _root_legal(layout: SuiteLayout, task_order: list[int], sizes: list[int], legal: dict[int, np.ndarray] | None) -> np.ndarray:
    """``[B, A]`` actions legal now: the task's static set, narrowed by the env's per-step mask."""
    rows = []
    for t, n in zip(task_order, sizes):
        mask = np.repeat(layout.action_masks[t][None], n, axis=0)
        if legal is not None and t in legal:
            now = np.asarray(legal[t], dtype=bool)
            if now.shape != (n, layout.specs[t].num_actions):
                raise ValueError(f"legal mask of task {layout.specs[t].name!r} has shape {now.shape}, expected {(n, layout.specs[t].num_actions)}")
            narrowed = mask.copy()
            narrowed[:, : now.shape[1]] &= now
            mask = np.where(narrowed.any(axis=1, keepdims=True), narrowed, mask)
        rows.append(mask)
    return np.concatenate(rows)


def uniform_legal_actions(legal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row of ``legal [n, A]``, drawn uniformly among that row's legal ones."""
    return (rng.random(legal.shape) * legal).argmax(axis=1)


def search_actions(
    model: WorldModel,
    layout: SuiteLayout,
    histories: dict[int, ContextHistory],
    config: SearchConfig,
    discount: float,
    rng: np.random.Generator,
    explore: bool,
    device: torch.device,
    legal: dict[int, np.ndarray] | None = None,
) -> ActResult:
    """Run one batched search over the current observation of every copy in ``histories``.

    Args:
        histories: task id -> that task's context history (rows = env copies).
        explore: collection (root noise, sampled actions) vs evaluation (greedy).
        legal: task id -> ``[n, num_actions]`` actions legal now per copy (e.g.
            ``EnvBatch.legal``); tasks not listed use their static action set.
    """
    task_order = list(histories)
    sizes = [histories[t].actions.shape[0] for t in task_order]
    root_legal = None if model.continuous else _root_legal(layout, task_order, sizes, legal)
    return search_contexts(model, layout, histories, root_legal, config, discount, rng, explore, device)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block (its own mode restored after): search and
    evaluation run without dropout (``model.dropout``), so a search is a function of its
    inputs and the model's weights alone."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.inference_mode()
def search_contexts(
    model: WorldModel,
    layout: SuiteLayout,
    histories: dict[int, ContextHistory],
    root_legal: np.ndarray | None,
    config: SearchConfig,
    discount: float,
    rng: np.random.Generator,
    explore: bool,
    device: torch.device,
) -> ActResult:
    """One batched search from the last slot of every history (all tasks' rows together).

    ``root_legal [B, A]`` (discrete suites; rows in the order of ``histories``) is what each
    root may play; nodes below the root may play anything their task has. Acting
    (:func:`search_actions`) and reanalyse call this with the same contexts and get the same
    search.
    """
    with eval_mode(model):
        task_order = list(histories)
        latents, actions, valid, task_ids = [], [], [], []
        for tid in task_order:
            h = histories[tid]
            n, steps = h.actions.shape[:2]
            obs = torch.as_tensor(h.obs.reshape((n * steps,) + h.obs.shape[2:]), device=device)
            latents.append(model.encode(obs, layout.kind(tid)).view(n, steps, -1))
            actions.append(torch.as_tensor(h.actions, device=device))
            valid.append(torch.as_tensor(h.valid, device=device))
            task_ids.append(torch.full((n,), tid, dtype=torch.long, device=device))
        latent = torch.cat(latents)
        action = torch.cat(actions)
        step_valid = torch.cat(valid)
        task_id = torch.cat(task_ids)
        root = model.initial_inference(latent, action[:, :-1], task_id, step_valid)
        sizes = [histories[t].actions.shape[0] for t in task_order]
        batch = int(sum(sizes))
        if model.continuous:
            generator = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
            sampler = ActionSampler(model, config.num_samples, config.sample_mode_action, generator)
            candidates = sampler(root.policy_logits, task_id, std_scale=config.root_sample_std_scale if explore else 1.0)
            recurrent = TreeSearchModel(model, root, task_id, config.num_simulations + 1, root_actions=candidates, sampler=sampler)
            search_root = Root(
                prior_logits=np.zeros((batch, config.num_samples), dtype=np.float32),
                value=root.value.float().cpu().numpy(),
                legal=np.ones((batch, config.num_samples), dtype=bool),
            )
        else:
            recurrent = TreeSearchModel(model, root, task_id, num_nodes=config.num_simulations + 1)
            search_root = Root(
                prior_logits=root.policy_logits.float().cpu().numpy(),
                value=root.value.float().cpu().numpy(),
                legal=root_legal,
                tree_legal=layout.action_masks[task_id.cpu().numpy()],
            )
        out = run_search(search_root, recurrent, config, discount, rng, explore)
        results = {}
        bounds = np.cumsum([0] + sizes)
        cand_np = candidates.float().cpu().numpy() if model.continuous else None
        for tid, part, lo, hi in zip(task_order, _split(out, sizes), bounds[:-1], bounds[1:]):
            if cand_np is None:
                results[tid] = TaskActions(search=part, actions=part.action, env_actions=part.action, legal=root_legal[lo:hi])
            else:
                cands = cand_np[lo:hi]
                chosen = cands[np.arange(hi - lo), part.action]
                dims = layout.specs[tid].action_dim
                results[tid] = TaskActions(search=part, actions=chosen, env_actions=chosen[:, :dims].copy(), candidates=cands)
        return ActResult(outputs=results)

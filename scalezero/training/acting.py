"""Choosing actions by search, for every env copy of every task in one batch.

Collection and evaluation both call :func:`search_actions`: observations of all tasks
are encoded per observation kind, the roots of all copies go through one
``initial_inference`` and one batched search (the task of each row is bound inside the
model closure; the search sees only legal-action masks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scalezero.config import SearchConfig
from scalezero.model import TreeSearchModel, WorldModel
from scalezero.search import Root, SearchOutput, run_search
from scalezero.tasks import SuiteLayout


class ContextHistory:
    """The last ``context_steps`` (observation, action) pairs and the current observation
    of each env copy of one task, padded to the suite's observation shape.

    Arrays: ``obs [n, C+1, *shape]`` (the last slot is the current observation),
    ``actions [n, C+1]`` (the action taken at each slot; the last is not yet known),
    ``valid [n, C+1]`` (False for slots before the episode's start).
    """

    def __init__(self, first_obs: np.ndarray, context_steps: int) -> None:
        n = first_obs.shape[0]
        self.obs = np.zeros((n, context_steps + 1) + first_obs.shape[1:], dtype=first_obs.dtype)
        self.actions = np.zeros((n, context_steps + 1), dtype=np.int64)
        self.valid = np.zeros((n, context_steps + 1), dtype=bool)
        self.obs[:, -1] = first_obs
        self.valid[:, -1] = True

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
class ActResult:
    """Search results split back per task: ``outputs[task_id]`` holds that task's rows."""

    outputs: dict[int, SearchOutput]


def _split(out: SearchOutput, sizes: list[int]) -> list[SearchOutput]:
    bounds = np.cumsum([0] + sizes)
    return [
        SearchOutput(**{f: getattr(out, f)[a:b] for f in ("action", "policy_target", "root_value", "visit_counts", "q_values")})
        for a, b in zip(bounds[:-1], bounds[1:])
    ]


@torch.inference_mode()
def search_actions(
    model: WorldModel,
    layout: SuiteLayout,
    histories: dict[int, ContextHistory],
    config: SearchConfig,
    discount: float,
    rng: np.random.Generator,
    explore: bool,
    device: torch.device,
) -> ActResult:
    """Run one batched search over the current observation of every copy in ``histories``.

    Args:
        histories: task id -> that task's context history (rows = env copies).
        explore: collection (root noise, sampled actions) vs evaluation (greedy).
    """
    task_order = list(histories)
    latents, actions, valid, task_ids = [], [], [], []
    for tid in task_order:
        h = histories[tid]
        n, steps = h.actions.shape
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
    legal = layout.action_masks[task_id.cpu().numpy()]
    recurrent = TreeSearchModel(model, root, task_id, num_nodes=config.num_simulations + 1)
    search_root = Root(
        prior_logits=root.policy_logits.float().cpu().numpy(),
        value=root.value.float().cpu().numpy(),
        legal=legal,
    )
    out = run_search(search_root, recurrent, config, discount, rng, explore)
    sizes = [histories[t].actions.shape[0] for t in task_order]
    return ActResult(outputs=dict(zip(task_order, _split(out, sizes))))

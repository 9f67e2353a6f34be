"""The learner: sample balanced windows, compute targets, the UniZero losses, one AdamW step.

One update, in order:
  1. sample ``batch_size`` windows of ``K + n + 1`` entries from each task's replay (with
     ``replay.reanalyse_fraction``, some get fresh policy targets from a search of the
     target network: ``reanalyse.py``);
  2. (with ``train.augment_shift``, each image window moves by one random shift, the view
     both networks then encode) the target network encodes every observation of the windows
     and runs the sequence:
     its latents are the next-latent targets, its values the n-step bootstrap values;
  3. the online network encodes the first ``K + 1`` observations and runs the same
     (teacher-forced) sequence of latent and action tokens;
  4. losses per position, masked, averaged per task, then averaged over tasks (uniformly, or
     weighted by task difficulty);
  5. clipped AdamW step, then the target network moves towards the online one (EMA).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scalezero.config import Config
from scalezero.model import ILLEGAL_LOGIT, WorldModel
from scalezero.model.moe import RouterInfo
from scalezero.model.support import value_transform
from scalezero.replay import TaskReplay, Window, nstep_value_targets
from scalezero.tasks import SuiteLayout
from scalezero.training.augment import draw_shifts, shift_windows
from scalezero.training.clustering import recluster
from scalezero.training.conflict import gradient_conflict
from scalezero.training.distributed import all_true, combine_gradients
from scalezero.training.reanalyse import reanalyse

#: Added to every value error to make a priority (EfficientZero's prioritized_eps).
PRIORITY_FLOOR = 1e-6
#: Parameters a reset (``train.reset_every``) re-initialises fully: the prediction heads.
RESET_HEADS = ("heads.value.", "heads.reward.", "heads.policy.")


def bootstrap_pieces(length: int, size: int, anchor: int) -> list[tuple[int, int]]:
    """Split steps ``0..length-1`` into consecutive ``(start, end)`` pieces of at most ``size``
    steps, with a piece starting at ``anchor`` (when ``0 < anchor < length``), so that step
    ``anchor + k`` is step ``k`` of its piece for ``k < size``."""
    starts = sorted({0, *range(anchor % size, length, size)})
    return list(zip(starts, [*starts[1:], length], strict=True))


@dataclass
class Batch:
    """Windows of several tasks stacked along the batch axis (rows of one task are contiguous)."""

    windows: dict[int, Window]
    fresh_values: dict[int, np.ndarray] | None = None
    """Reanalyse with ``replay.reanalyse_values``: task id -> ``[B, L]`` root values of fresh
    searches (NaN where none ran), used as n-step bootstraps instead of the target network's."""
    priorities: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
    """Prioritized replay, set by :meth:`Learner.update`: task id -> ``(priorities, mask)``,
    both ``[B]`` (each window's first step), for :meth:`Learner.apply_priorities` to write back."""

    @property
    def task_ids(self) -> list[int]:
        return list(self.windows)

    def row_slot(self) -> np.ndarray:
        """``[N]`` index into ``task_ids`` of every row."""
        return np.concatenate([np.full(w.obs.shape[0], i) for i, w in enumerate(self.windows.values())])


@dataclass
class LossOutput:
    """The named losses of one batch.

    ``task_totals [T]`` is each task's weighted loss (the total is their mean, weighted by
    ``Learner.task_weights``, plus the router losses); ``per_task`` maps each loss name to ``[T]``; ``losses`` to its mean over tasks.
    """

    total: torch.Tensor
    task_totals: torch.Tensor
    losses: dict[str, torch.Tensor]
    per_task: dict[str, torch.Tensor]
    router: list[RouterInfo]
    value_target: np.ndarray
    value_mask: np.ndarray
    value_error: np.ndarray | None = None
    """``[N, K+1]`` |value target - predicted value| (scalars), for prioritized replay."""


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with decay on weight matrices only (not biases, norms or embeddings).

    Every parameter is in the optimiser, frozen or not: a parameter frozen now (a LoRA adapter
    of a later stage) gets no gradient and is skipped until it is unfrozen, and then trains."""
    decay, no_decay = [], []
    embedding_params = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    for p in model.parameters():
        (decay if p.ndim >= 2 and id(p) not in embedding_params else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # Fused: one kernel over all of a group's tensors, where torch has it (CPU, CUDA): 1.2 ms
    # against 3.9 ms per step for foreach on the CartPole model (66 tensors, one core, loaded
    # machine; benchmarks/learner.py). torch's default on CPU is a Python loop per tensor.
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=fused, foreach=not fused)


def _masked_mean_per_task(
    values: torch.Tensor, mask: torch.Tensor, row_slot: torch.Tensor, num_tasks: int, row_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """``values, mask [N, P]``, ``row_slot [N]`` -> ``[T]`` mean over each task's masked entries;
    ``row_weight [N]`` (importance weights) scales each row's terms, not the count."""
    if row_weight is not None:
        values = values * row_weight[:, None]
    v = values.new_zeros(num_tasks).index_add(0, row_slot, (values * mask).sum(1))
    m = values.new_zeros(num_tasks).index_add(0, row_slot, mask.sum(1)).clamp(min=1.0)
    return v / m


def expert_load_per_task(router: list[RouterInfo], task_ids: list[int], row_slot: np.ndarray) -> dict[str, float]:
    """Fraction of each task's routed token slots sent to each expert, per MoE layer.

    ``expert_index`` lists tokens row by row (every row has the same number of tokens), so
    a token's task follows from its row's slot in ``row_slot [N]``. Keys:
    ``task<t>/moe/layer<l>/expert<e>``.
    """
    out: dict[str, float] = {}
    for layer, info in enumerate(router):
        num_experts = info.load.shape[0]
        per_row = info.expert_index.reshape(len(row_slot), -1)
        slots = torch.as_tensor(row_slot, device=per_row.device)
        for i, t in enumerate(task_ids):
            counts = torch.bincount(per_row[slots == i].flatten(), minlength=num_experts).float()
            for e, frac in enumerate((counts / counts.sum()).tolist()):
                out[f"task{t}/moe/layer{layer}/expert{e}"] = frac
    return out


def path_consistency(value_logits: torch.Tensor, reward_logits: torch.Tensor, support, discount: float, next_terminal: np.ndarray) -> torch.Tensor:
    """``[N, K]`` squared gap ``(h(v_t) - h(r_t + discount * v_{t+1}))^2`` between the model's
    value at step t and its own one-step backup (``v_{t+1} = 0`` where step t+1 is terminal),
    in h-transformed units so that tasks with large returns do not dominate. Gradients reach
    the value and reward predictions on both sides."""
    values = support.logits_to_scalar(value_logits)  # [N, K+1]
    rewards = support.logits_to_scalar(reward_logits)  # [N, K+1]
    alive = 1.0 - torch.as_tensor(next_terminal, device=values.device, dtype=values.dtype)
    backup = rewards[:, :-1] + discount * alive * values[:, 1:]
    return (value_transform(values[:, :-1]) - value_transform(backup)).pow(2)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a target distribution over the last axis."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1)


class Learner:
    """Owns the online network's optimiser and the EMA target network."""

    def __init__(self, model: WorldModel, layout: SuiteLayout, config: Config, device: torch.device) -> None:
        self.model = model
        self.layout = layout
        self.config = config
        self.device = device
        self.target = copy.deepcopy(model).requires_grad_(False).eval()  # no dropout in targets
        self.optimizer = make_optimizer(model, config.train.lr, config.train.weight_decay)
        self.batch_sizes = [entry.batch_size or config.train.batch_size for entry in config.tasks]
        self.task_weights = np.ones(layout.num_tasks)
        """Per-task loss weights (mean 1); the loop sets them under ``train.task_weighting: difficulty``."""
        self.distributed = False
        """Combine gradients across ranks before each step (set by the loop under torchrun)."""
        self.grad_weight = 1.0
        """This rank's share of the training tasks (its gradient's weight in the sum over ranks)."""
        self.cluster_labels: dict[int, int] = {}
        """Latest task clustering (task id -> cluster), when ``train.cluster_every`` is on."""
        self.updates = 0
        self.rng = np.random.default_rng(config.train.seed + 29)
        self.reanalyse_s = 0.0
        """Wall seconds of the last batch's reanalyse search (0 without reanalyse)."""

    def set_lr(self, lr: float) -> None:
        """Set the optimiser's learning rate for the next updates (``train.lr_final_fraction``)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def sample(self, replays: dict[int, TaskReplay], task_ids: list[int]) -> Batch:
        """Draw each listed task's windows from its own replay: ``train.batch_size`` per task
        (balanced), or the task's own ``batch_size`` where its suite entry sets one. With
        ``replay.reanalyse_fraction`` some windows get fresh targets from the target network."""
        replay = self.config.replay
        length = replay.unroll_steps + replay.td_steps + 1
        context = self.config.train.context_steps if replay.reanalyse_fraction > 0 else 0
        alpha, beta = replay.priority_alpha, replay.priority_beta
        windows = {t: replays[t].sample(self.batch_sizes[t], length, self.rng, context=context, alpha=alpha, beta=beta) for t in task_ids}
        if not context:
            return Batch(windows)
        start = time.perf_counter()
        fresh = reanalyse(self.target, self.layout, windows, self.config, self.rng, self.device)
        self.reanalyse_s = time.perf_counter() - start
        return Batch(windows, fresh)

    def _augment(self, batch: Batch) -> dict[int, np.ndarray]:
        """Each image task's windows shifted by ``train.augment_shift`` (one shift per window,
        drawn once per update so the online and target networks see the same view)."""
        k = self.config.train.augment_shift
        if k == 0:
            return {}
        return {
            t: shift_windows(w.obs, draw_shifts(w.obs.shape[0], k, self.rng))
            for t, w in batch.windows.items()
            if self.layout.kind(t) == "image"
        }

    def _encode(self, net: WorldModel, batch: Batch, positions: int, shifted: dict[int, np.ndarray] | None = None) -> torch.Tensor:
        """Encode the first ``positions`` observations of every window -> ``[N, positions, D]``
        (a task's ``shifted`` observations in place of its own where given)."""
        latents = []
        for t, w in batch.windows.items():
            obs = (shifted or {}).get(t, w.obs)[:, :positions]
            b = obs.shape[0]
            flat = self.layout.pad_obs(t, obs.reshape((b * positions,) + obs.shape[2:]))
            latents.append(net.encode(torch.as_tensor(flat, device=self.device), self.layout.kind(t)).view(b, positions, -1))
        return torch.cat(latents)

    def _stack(self, batch: Batch, name: str) -> np.ndarray:
        return np.concatenate([getattr(w, name) for w in batch.windows.values()])

    def _horizons(self, batch: Batch) -> np.ndarray | None:
        """Per-window n-step horizons under ``replay.td_age_steps`` (None where it is off)."""
        n, age_steps = self.config.replay.td_steps, self.config.replay.td_age_steps
        if age_steps <= 0:
            return None
        ages = np.concatenate([w.ages for w in batch.windows.values()])
        return np.clip(n - ages // age_steps, 1, n)

    def _bootstrap_values(self, latents: torch.Tensor, actions: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """The target network's values ``[N, L]`` at every step of the windows, over the whole
        window or, with ``replay.bootstrap_split``, over the pieces :func:`bootstrap_pieces` gives."""
        replay = self.config.replay
        if not replay.bootstrap_split:
            return self.target.sequence_values(latents, actions, task_ids)
        pieces = bootstrap_pieces(latents.shape[1], replay.unroll_steps + 1, replay.td_steps)
        return torch.cat([self.target.sequence_values(latents[:, a:b], actions[:, a:b], task_ids) for a, b in pieces], dim=1)

    def compute_losses(self, batch: Batch) -> LossOutput:
        """Steps 2-4: targets, the online forward and the named losses (with gradients)."""
        cfg, train = self.config, self.config.train
        K, n = cfg.replay.unroll_steps, cfg.replay.td_steps
        dev = self.device
        slot_np = batch.row_slot()
        row_slot = torch.as_tensor(slot_np, device=dev)
        num_tasks = len(batch.task_ids)
        task_ids = torch.as_tensor(np.asarray(batch.task_ids)[slot_np], device=dev)
        actions = torch.as_tensor(self._stack(batch, "actions"), device=dev)
        rewards = self._stack(batch, "rewards")
        is_step = self._stack(batch, "is_step")
        is_obs = self._stack(batch, "is_obs")
        terminal = self._stack(batch, "terminal")
        length = actions.shape[1]

        # 2. Targets from the target network (no gradient).
        shifted = self._augment(batch)
        with torch.no_grad():
            target_latents = self._encode(self.target, batch, length, shifted)
            bootstrap = self._bootstrap_values(target_latents, actions, task_ids).cpu().numpy()
        if batch.fresh_values is not None:
            fresh = np.concatenate([batch.fresh_values[t] for t in batch.task_ids])
            bootstrap = np.where(np.isnan(fresh), bootstrap, fresh)
        value_target, value_mask = nstep_value_targets(rewards, is_step, is_obs, terminal, bootstrap, train.discount, n, K + 1, self._horizons(batch))

        # 3. Online forward over K+1 steps (teacher forcing on encoded observations).
        latents = self._encode(self.model, batch, K + 1, shifted)
        out = self.model.forward_sequence(latents, actions[:, : K + 1], task_ids)

        # 4. Losses per position [N, K+1], masked and averaged per task.
        step_mask = torch.as_tensor(is_step[:, : K + 1], device=dev, dtype=torch.float32)
        next_mask = step_mask * torch.as_tensor(is_obs[:, 1 : K + 2], device=dev, dtype=torch.float32)
        latent_loss = self.latent_error(out.next_latent, target_latents[:, 1 : K + 2])
        reward_target = self.model.reward_support.scalar_to_target(torch.as_tensor(rewards[:, : K + 1], device=dev))
        reward_loss = soft_cross_entropy(out.reward_logits, reward_target)
        value_two_hot = self.model.value_support.scalar_to_target(torch.as_tensor(value_target, device=dev))
        value_loss = soft_cross_entropy(out.value_logits, value_two_hot)
        policy_loss, entropy = self._policy_loss(batch, out.policy_logits, task_ids)
        value_mask_t = torch.as_tensor(value_mask, device=dev, dtype=torch.float32)
        w = self._importance_weights(batch)
        extra = self._consistency_losses(out, target_latents, next_mask, step_mask, is_obs, terminal, row_slot, num_tasks, w)
        if train.imagined_weight > 0:
            imagined = self._imagined_loss(batch, latents, out, actions, task_ids, reward_target, value_two_hot, value_mask_t, next_mask)
            extra["imagined"] = _masked_mean_per_task(imagined, next_mask[:, :K], row_slot, num_tasks, w)
        per_task = {
            "latent": _masked_mean_per_task(latent_loss, next_mask, row_slot, num_tasks, w),
            "reward": _masked_mean_per_task(reward_loss, step_mask, row_slot, num_tasks, w),
            "value": _masked_mean_per_task(value_loss, value_mask_t, row_slot, num_tasks, w),
            "policy": _masked_mean_per_task(policy_loss, step_mask, row_slot, num_tasks, w),
            "entropy": _masked_mean_per_task(entropy, step_mask, row_slot, num_tasks, w),
            **extra,
        }
        value_error = None
        if cfg.replay.priority_alpha > 0:
            with torch.no_grad():
                predicted = self.model.value_support.logits_to_scalar(out.value_logits.detach()).cpu().numpy()
            value_error = np.abs(value_target - predicted)
        weights = {
            "latent": train.latent_weight,
            "reward": train.reward_weight,
            "value": train.value_weight,
            "policy": train.policy_weight,
            "entropy": -train.entropy_weight,
            "temporal_consistency": train.temporal_consistency_weight,
            "path_consistency": train.path_consistency_weight,
            "imagined": train.imagined_weight,
        }
        task_totals = sum(weights[k] * v for k, v in per_task.items())  # [T]
        losses = {k: v.mean() for k, v in per_task.items()}
        weights_t = torch.as_tensor(self.task_weights[batch.task_ids], dtype=task_totals.dtype, device=dev)
        total = (weights_t * task_totals).sum() / weights_t.sum()
        if out.router:  # MoE: router losses averaged over layers
            losses["moe_balance"] = torch.stack([r.balance_loss for r in out.router]).mean()
            losses["moe_z"] = torch.stack([r.z_loss for r in out.router]).mean()
            total = total + train.moe_balance_weight * losses["moe_balance"] + train.moe_z_weight * losses["moe_z"]
        return LossOutput(total, task_totals, losses, per_task, out.router, value_target, value_mask, value_error)

    def _importance_weights(self, batch: Batch) -> torch.Tensor | None:
        """``[N]`` importance weights of a prioritized draw (None for a uniform one)."""
        if any(w.weights is None for w in batch.windows.values()):
            return None
        return torch.as_tensor(self._stack(batch, "weights"), device=self.device)

    def latent_error(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[..., D] -> [...]`` next-latent squared error on a scale near 1 for either latent
        norm: summed over SimNorm features, averaged over LayerNorm ones (``model.latent_norm``)."""
        squared = (predicted - target).pow(2)
        return squared.mean(-1) if self.config.model.latent_norm == "layernorm" else squared.sum(-1)

    def _policy_loss(self, batch: Batch, policy_logits: torch.Tensor, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy cross-entropy against the search targets and the policy's entropy, ``[N, K+1]``.

        Discrete: soft cross-entropy over the actions that were legal at each step (the
        target puts no mass elsewhere). Continuous (Sampled MuZero): the target is a
        distribution over the candidate actions the search chose among, and the loss is
        ``-sum_k target_k * log pi(candidate_k)`` with the squashed Gaussian's exact density.
        """
        K = self.config.replay.unroll_steps
        dev = self.device
        target = torch.as_tensor(self._stack(batch, "policies")[:, : K + 1], device=dev)
        if self.model.continuous:
            candidates = torch.as_tensor(self._stack(batch, "candidates")[:, : K + 1], device=dev)
            dist = self.model.policy_distribution(policy_logits, task_ids)
            return -(target * dist.log_prob(candidates)).sum(-1), dist.entropy()
        logits = policy_logits  # the model already masked each task's static action set
        if all(w.legal is not None for w in batch.windows.values()):
            legal = torch.as_tensor(self._stack(batch, "legal")[:, : K + 1], device=dev)
            logits = logits.masked_fill(~legal, ILLEGAL_LOGIT)
        probs = F.softmax(logits, dim=-1)
        entropy = -(probs * F.log_softmax(logits, dim=-1)).sum(-1)
        return soft_cross_entropy(logits, target), entropy

    def _imagined_loss(
        self,
        batch: Batch,
        latents: torch.Tensor,
        out,
        actions: torch.Tensor,
        task_ids: torch.Tensor,
        reward_target: torch.Tensor,
        value_target: torch.Tensor,
        value_mask: torch.Tensor,
        next_mask: torch.Tensor,
    ) -> torch.Tensor:
        """``[N, K]`` weighted reward + value + policy losses at positions ``1..K`` of a pass
        whose latents after the first are the teacher-forced pass's one-step predictions (the
        latents search feeds the heads). Gradients reach the predictions too, so the dynamics
        also learn to predict what matters for value, reward and policy (MuZero)."""
        train, K = self.config.train, self.config.replay.unroll_steps
        predicted = torch.cat([latents[:, :1], out.next_latent[:, :K]], dim=1)  # [N, K+1, D]
        imagined = self.model.forward_sequence(predicted, actions[:, : K + 1], task_ids)
        reward = soft_cross_entropy(imagined.reward_logits, reward_target)[:, 1:]
        value = soft_cross_entropy(imagined.value_logits, value_target)[:, 1:] * value_mask[:, 1:]
        policy, _ = self._policy_loss(batch, imagined.policy_logits, task_ids)
        # A step whose observation was predicted (next_mask[:, :K]) but whose own step is the
        # episode's final entry has no reward or policy target: mask those with is_step.
        step = torch.as_tensor(self._stack(batch, "is_step")[:, 1 : K + 1], device=self.device, dtype=reward.dtype)
        return train.reward_weight * reward * step + train.value_weight * value + train.policy_weight * policy[:, 1:] * step

    def _consistency_losses(
        self,
        out,
        target_latents: torch.Tensor,
        next_mask: torch.Tensor,
        step_mask: torch.Tensor,
        is_obs: np.ndarray,
        terminal: np.ndarray,
        row_slot: torch.Tensor,
        num_tasks: int,
        row_weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """EZ-M's temporal and path consistency, per task ``[T]`` (only those with a weight)."""
        train, K = self.config.train, self.config.replay.unroll_steps
        losses = {}
        if train.temporal_consistency_weight > 0:
            temporal = self.model.consistency.loss(out.next_latent, target_latents[:, 1 : K + 2])
            losses["temporal_consistency"] = _masked_mean_per_task(temporal, next_mask, row_slot, num_tasks, row_weight)
        if train.path_consistency_weight > 0:
            path = path_consistency(out.value_logits, out.reward_logits, self.model.support, train.discount, terminal[:, 1 : K + 1])
            # Pairs (t, t+1) inside the unroll where step t exists and t+1 is an observation of the same episode.
            pair_mask = step_mask[:, :K] * torch.as_tensor(is_obs[:, 1 : K + 1], device=path.device, dtype=torch.float32)
            losses["path_consistency"] = _masked_mean_per_task(path, pair_mask, row_slot, num_tasks, row_weight)
        return losses

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on ``batch``; returns the named losses and diagnostics."""
        train = self.config.train
        result = self.compute_losses(batch)
        total, losses, per_task = result.total, result.losses, result.per_task
        value_target, value_mask = result.value_target, result.value_mask

        # Optional diagnostic on this batch, before the step (needs the graph).
        conflict = {}
        every = train.conflict_every
        if every and self.updates % every == 0 and len(batch.task_ids) > 1 and torch.isfinite(total.detach()):
            conflict = gradient_conflict(self.model, result.task_totals)

        # Optional task clustering (MoW), also before the step; the target routes the same way.
        clusters = {}
        every = train.cluster_every
        if every and self.updates % every == 0 and len(batch.task_ids) > 1 and torch.isfinite(total.detach()):
            labels = recluster(self.model, result.task_totals, batch.task_ids, train.num_clusters, self.config.model.moe_top_k)
            self.target.expert_allowed.copy_(self.model.expert_allowed)
            self.cluster_labels.update({t: int(c) for t, c in zip(batch.task_ids, labels)})
            clusters = {f"task{t}/cluster": float(c) for t, c in zip(batch.task_ids, labels)}

        # 5. Optimiser step and target-network EMA; a NaN/inf loss or gradient skips both.
        self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1
        finite = bool(torch.isfinite(total.detach()))
        if self.distributed:  # every rank skips together, or none does
            finite = all_true(finite, self.device)
        if not finite:
            return {"nonfinite": 1.0, "loss/total": float(total.detach())}
        total.backward()
        grad_norm = self._step()
        if grad_norm is None:
            return {"nonfinite": 1.0, "loss/total": float(total.detach())}
        if result.value_error is not None:
            batch.priorities = self._priorities(batch, result)

        # Every scalar in one device->host copy (one wait for the GPU, not one per number).
        names = [f"loss/{k}" for k in losses] + ["loss/total", "grad_norm"]
        scalars = [*losses.values(), total, grad_norm]
        for k, v in per_task.items():
            names += [f"task{t}/loss/{k}" for t in batch.task_ids]
            scalars += list(v)
        metrics = dict(zip(names, torch.stack([x.detach().float().reshape(()) for x in scalars]).tolist()))
        if self.config.replay.reanalyse_fraction > 0:
            metrics["time/reanalyse_s"] = self.reanalyse_s
        metrics["value_target_mean"] = float(value_target[value_mask].mean()) if value_mask.any() else 0.0
        for t in batch.task_ids:
            metrics[f"task{t}/loss_weight"] = float(self.task_weights[t])
        metrics.update(expert_load_per_task(result.router, batch.task_ids, batch.row_slot()))
        metrics.update(conflict)
        metrics.update(clusters)
        return metrics

    def _priorities(self, batch: Batch, result: LossOutput) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Each task's new priorities ``[B]``: the value error at each window's first step (the
        step it was drawn for, as in EfficientZero) plus a floor, so no stored step becomes
        undrawable; where a start has no value target, it keeps its priority."""
        mask = result.value_mask[:, 0]
        error = result.value_error[:, 0] + PRIORITY_FLOOR
        out, row = {}, 0
        for t, w in batch.windows.items():
            b = w.obs.shape[0]
            out[t] = (error[row : row + b].astype(np.float32), mask[row : row + b])
            row += b
        return out

    @staticmethod
    def apply_priorities(batch: Batch, replays: dict[int, TaskReplay]) -> None:
        """Write an updated batch's new priorities back to the replays it was drawn from (on
        the thread that owns the replays; nothing to do for a uniform draw)."""
        for t, (priorities, mask) in (batch.priorities or {}).items():
            replays[t].update_priorities(batch.windows[t], priorities, mask)

    def _step(self) -> torch.Tensor | None:
        """Combine gradients across ranks (when distributed), clip, step, move the target.
        Returns the gradient norm, or None when it was NaN/inf (the step is skipped)."""
        train = self.config.train
        if self.distributed:
            combine_gradients(self.model, self.grad_weight)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip, foreach=True)
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.step()
        if not self.holding_target():
            self._update_target(train.target_tau)
        if train.reset_every and self.updates % train.reset_every == 0:
            self.reset()
        return grad_norm

    def holding_target(self) -> bool:
        """Whether this update falls in the ``train.reset_target_hold`` updates after a reset,
        when the target network does not move (a function of the update count alone, so a
        resumed run holds exactly where the original would)."""
        train = self.config.train
        if not (train.reset_every and train.reset_target_hold) or self.updates < train.reset_every:
            return False
        return 1 <= self.updates % train.reset_every <= train.reset_target_hold

    @torch.no_grad()
    def reset(self) -> None:
        """Shrink and perturb the online network (``train.reset_every``): the value, reward and
        policy heads take fresh weights, every other weight moves to ``reset_keep`` of itself
        plus the rest of a fresh one; the optimiser's moments start again. The fresh weights
        depend only on the seed and the number of resets so far (exact resume, the same on every
        rank); the target network is not touched."""
        train = self.config.train
        count = self.updates // train.reset_every
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(train.seed * 10_007 + count)
            fresh = dict(WorldModel(self.config.resolved_model(), self.layout).named_parameters())
        for name, param in self.model.named_parameters():
            new = fresh[name].to(device=param.device, dtype=param.dtype)
            if name.startswith(RESET_HEADS):
                param.copy_(new)
            else:
                param.lerp_(new, 1.0 - train.reset_keep)
        self.optimizer.state.clear()

    def idle_update(self) -> dict[str, float]:
        """A distributed rank with no task to train joins the update with zero gradients."""
        self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1
        if not all_true(True, self.device):
            return {"nonfinite": 1.0}
        return {} if self._step() is not None else {"nonfinite": 1.0}

    @torch.no_grad()
    def _update_target(self, tau: float) -> None:
        torch._foreach_lerp_(list(self.target.parameters()), list(self.model.parameters()), tau)
        for tb, b in zip(self.target.buffers(), self.model.buffers()):
            tb.copy_(b)

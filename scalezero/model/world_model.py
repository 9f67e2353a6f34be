"""The multi-task world model: encoders, token embeddings, transformer and heads.

A time step ``t`` is two tokens: the latent token ``z_t`` (the encoded observation, or a
predicted latent inside search) and the action token ``a_t``. The sequence is
``z_0, a_0, z_1, a_1, ...``; a learned task embedding is added to every token. Value and
policy logits are read at latent tokens, reward logits and the predicted next latent at
action tokens. Policy logits are masked with the task's action mask (illegal -> -1e9).

Discrete suites embed action ids with a lookup table. Continuous suites (every task acts in
``[-1, 1]^d``, padded to the suite's largest ``d``) embed action vectors with a linear map,
and their "policy logits" are the parameters of a squashed Gaussian
(:class:`~scalezero.model.policy.SquashedGaussian`, ``[..., 2 * action_dim]``), from which the
search samples the actions it considers.

Four entry points share the same transformer:
- :meth:`WorldModel.forward_sequence`: teacher forcing over whole windows (training).
- :meth:`WorldModel.sequence_values`: the values of whole windows only (bootstrap targets).
- :meth:`WorldModel.initial_inference`: the search root from a context of past steps,
  returning the KV cache of the context.
- :meth:`WorldModel.recurrent_inference`: one imagined step (action token, then the
  predicted latent token) on top of a cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from scalezero.config import ModelConfig
from scalezero.model.consistency import ConsistencyProjector
from scalezero.model.encoders import make_encoders
from scalezero.model.heads import Heads
from scalezero.model.lora import inject_lora
from scalezero.model.moe import RouterInfo
from scalezero.model.policy import SquashedGaussian
from scalezero.model.support import Support
from scalezero.model.transformer import KVCache, Transformer
from scalezero.tasks.base import SuiteLayout

ILLEGAL_LOGIT = -1e9
"""Policy logit of actions a task does not have (finite so soft cross-entropy stays finite)."""


@dataclass
class SequenceOutput:
    """Teacher-forced outputs for every step of ``[B, T]`` windows.

    Attributes:
        value_logits: ``[B, T, bins]`` at latent tokens.
        policy_logits: ``[B, T, A]`` at latent tokens, illegal actions at -1e9.
        reward_logits: ``[B, T, bins]`` at action tokens (reward of taking ``a_t``).
        next_latent: ``[B, T, D]`` at action tokens (prediction of ``z_{t+1}``).
        router: one :class:`RouterInfo` per MoE layer (empty for a dense model); token
            order inside is ``[B, 2T]`` flattened.
    """

    value_logits: Tensor
    policy_logits: Tensor
    reward_logits: Tensor
    next_latent: Tensor
    router: list[RouterInfo] = field(default_factory=list)


@dataclass
class RootInference:
    """Search root from :meth:`WorldModel.initial_inference`.

    Attributes:
        value: ``[B]`` scalar value of the root.
        value_logits: ``[B, bins]``.
        policy_logits: ``[B, A]`` (illegal actions at -1e9).
        latent: ``[B, D]`` root latent (the last context step's encoded observation).
        cache: KV cache of the whole context including the root latent token
            (``2T - 1`` tokens, left padding marked invalid).
    """

    value: Tensor
    value_logits: Tensor
    policy_logits: Tensor
    latent: Tensor
    cache: KVCache


class RecurrentOutput(NamedTuple):
    """One imagined step from :meth:`WorldModel.recurrent_inference` (unpacks as a tuple).

    Attributes:
        reward: ``[B]`` scalar reward of the action.
        reward_logits: ``[B, bins]``.
        next_latent: ``[B, D]`` predicted latent after the action.
        value: ``[B]`` scalar value of the predicted latent.
        value_logits: ``[B, bins]``.
        policy_logits: ``[B, A]`` (illegal actions at -1e9).
        new_token_kv: ``[layers, 2, B, H, 2, dh]`` k/v of the two new tokens
            (action token, then latent token).
    """

    reward: Tensor
    reward_logits: Tensor
    next_latent: Tensor
    value: Tensor
    value_logits: Tensor
    policy_logits: Tensor
    new_token_kv: Tensor


class WorldModel(nn.Module):
    """UniZero-style world model shared by all tasks of a suite.

    Args:
        cfg: model sizes.
        layout: the suite layout (tasks, shared action set and masks, padded obs shapes).
    """

    def __init__(self, cfg: ModelConfig, layout: SuiteLayout) -> None:
        super().__init__()
        cfg.validate()
        if cfg.attention_window_steps < 1:
            raise ValueError("WorldModel needs a resolved attention window (>= 1); build it from Config.resolved_model()")
        self.cfg = cfg
        self.num_tasks = layout.num_tasks
        self.num_actions = layout.num_actions
        self.continuous = layout.continuous
        self.action_dim = layout.action_dim
        self.embed_dim = cfg.embed_dim
        self.encoders = make_encoders(cfg, layout)
        self.action_embed: nn.Module
        if self.continuous:
            self.action_embed = nn.Linear(layout.action_dim, cfg.embed_dim)
        else:
            self.action_embed = nn.Embedding(layout.num_actions, cfg.embed_dim)
            nn.init.normal_(self.action_embed.weight, std=0.02)
        self.task_embed: nn.Embedding | None = None
        if cfg.task_embedding:
            self.task_embed = nn.Embedding(layout.num_tasks, cfg.embed_dim)
            nn.init.normal_(self.task_embed.weight, std=0.02)
        self.consistency = ConsistencyProjector(cfg.embed_dim, cfg.mlp_hidden) if cfg.consistency_head else None
        self.transformer = Transformer(cfg)
        if cfg.lora_stages > 1:
            inject_lora(self.transformer, cfg.lora_targets, cfg.lora_stages, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_scale_bound)
        self.heads = Heads(cfg, 2 * layout.action_dim if self.continuous else layout.num_actions)
        self.register_buffer("action_masks", torch.as_tensor(layout.action_masks, dtype=torch.bool).clone())
        dim_masks = np.zeros((layout.num_tasks, 0), dtype=bool) if layout.action_dim_masks is None else layout.action_dim_masks
        self.register_buffer("action_dim_masks", torch.as_tensor(dim_masks, dtype=torch.bool).clone())
        # Routed experts each task may use (all, unless task clustering restricts them); a
        # buffer, so checkpoints carry it and search routes exactly as training does.
        self.register_buffer("expert_allowed", torch.ones(layout.num_tasks, max(cfg.moe_num_experts, 1), dtype=torch.bool))
        self.support = Support(cfg.support_size, scale=cfg.support_scale, target=cfg.support_target, sigma=cfg.support_sigma)
        self.value_support = self.support
        self.reward_support = self.support

    # ----------------------------------------------------------------- pieces
    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def parameter_breakdown(self) -> dict[str, int]:
        """All parameters by part: ``encoders``, ``embeddings`` (latent, action, task),
        ``backbone`` (the transformer without routed experts), ``experts`` (routed MoE
        experts), ``adapters`` (LoRA), ``heads`` (with the consistency projector), and ``total``."""
        counts = dict.fromkeys(("encoders", "embeddings", "backbone", "experts", "adapters", "heads"), 0)
        for name, p in self.named_parameters():
            if name.startswith("encoders."):
                part = "encoders"
            elif name.startswith(("heads.", "consistency.")):
                part = "heads"
            elif "lora_" in name:
                part = "adapters"
            elif name.startswith("transformer."):
                part = "experts" if ".experts." in name else "backbone"
            else:
                part = "embeddings"
            counts[part] += p.numel()
        counts["total"] = sum(counts.values())
        return counts

    def encode(self, obs: Tensor, kind: str) -> Tensor:
        """Encode observations of one kind ``[N, *layout.obs_shapes[kind]]`` -> latent ``[N, D]``."""
        return self.encoders[kind](obs)

    def _experts_for(self, task_ids: Tensor) -> Tensor | None:
        """``[B, E]`` routed experts allowed for each row's task; None when unrestricted."""
        if self.cfg.moe_num_experts == 0 or bool(self.expert_allowed.all()):
            return None
        return self.expert_allowed[task_ids]

    def _task_bias(self, task_ids: Tensor) -> Tensor | float:
        """``[B, 1, D]`` task embedding to add to every token (0 when disabled)."""
        if self.task_embed is None:
            return 0.0
        e = self.task_embed(task_ids)
        if self.cfg.task_embedding_max_norm > 0:  # functional rescaling (nn.Embedding's max_norm edits weights in place)
            e = e * (self.cfg.task_embedding_max_norm / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
        return e.unsqueeze(1)

    def latent_token(self, latent: Tensor) -> Tensor:
        """Latent ``[..., D]`` -> token embedding ``[..., D]`` (without the task embedding).

        The latent is the token as it is. A linear map in between (with a bias) made the
        observation-dependent part about 1% of the token at initialisation (std 0.00065
        against a constant near 0.07), so the transformer started out nearly
        blind to what it observed."""
        return latent

    def embed_actions(self, actions: Tensor) -> Tensor:
        """Action tokens ``[..., D]`` from ids ``[...]`` (discrete) or vectors ``[..., action_dim]``
        (continuous, padded dimensions 0)."""
        if self.continuous:
            return self.action_embed(actions.to(self.action_embed.weight.dtype))
        return self.action_embed(actions)

    def policy_distribution(self, params: Tensor, task_ids: Tensor) -> SquashedGaussian:
        """The continuous policy of policy-head outputs ``params [B, ..., 2 * action_dim]``."""
        mask = self.action_dim_masks[task_ids]
        mask = mask.view(mask.shape[0], *([1] * (params.dim() - 2)), mask.shape[-1])
        return SquashedGaussian(params, mask, self.cfg.policy_init_std)

    def mask_policy(self, logits: Tensor, task_ids: Tensor) -> Tensor:
        """Set illegal actions to -1e9. ``logits [B, ..., A]``, ``task_ids [B]``. Continuous
        suites have nothing to mask here (their padded dimensions are masked in the policy)."""
        if self.continuous:
            return logits
        legal = self.action_masks[task_ids]  # [B, A]
        legal = legal.view(legal.shape[0], *([1] * (logits.dim() - 2)), legal.shape[-1])
        return logits.masked_fill(~legal, ILLEGAL_LOGIT)

    def _step_tokens(self, latents: Tensor, actions: Tensor, task_ids: Tensor) -> Tensor:
        """Interleave ``latents [B, T, D]`` and ``actions [B, T(, action_dim)]`` -> tokens ``[B, 2T, D]``."""
        b, t, d = latents.shape
        z = self.latent_token(latents)
        a = self.embed_actions(actions)
        tokens = torch.stack([z, a], dim=2).reshape(b, 2 * t, d)
        return tokens + self._task_bias(task_ids)

    @staticmethod
    def _step_positions(step_valid: Tensor) -> tuple[Tensor, Tensor]:
        """Token positions and key validity ``[B, 2T]`` from ``step_valid [B, T]``.

        Valid steps are numbered 0, 1, ... per row; padding steps get position 0 (they are
        masked as keys, so their position is irrelevant).
        """
        b, t = step_valid.shape
        step_idx = (step_valid.long().cumsum(dim=1) - 1).clamp(min=0)
        offsets = torch.arange(2, device=step_valid.device)
        positions = (2 * step_idx.unsqueeze(-1) + offsets).reshape(b, 2 * t)
        valid = step_valid.unsqueeze(-1).expand(b, t, 2).reshape(b, 2 * t)
        return positions, valid

    # ------------------------------------------------------------ entry points
    def forward_sequence(
        self,
        latents: Tensor,
        actions: Tensor,
        task_ids: Tensor,
        step_valid: Tensor | None = None,
    ) -> SequenceOutput:
        """Teacher-forced pass over ``z_0, a_0, ..., z_{T-1}, a_{T-1}``.

        Args:
            latents: ``[B, T, D]`` encoded observations.
            actions: ``[B, T]`` long actions, or ``[B, T, action_dim]`` float in a continuous
                suite (the last one only affects the last reward/next-latent outputs).
            task_ids: ``[B]`` long.
            step_valid: ``[B, T]`` bool, False for left-padding steps; None = all valid.
        """
        router: list[RouterInfo] = []
        y_latent, y_action = self._sequence(latents, actions, task_ids, step_valid, router)
        return SequenceOutput(
            value_logits=self.heads.value(y_latent),
            policy_logits=self.mask_policy(self.heads.policy(y_latent), task_ids),
            reward_logits=self.heads.reward(y_action),
            next_latent=self.heads.next_latent(y_action),
            router=router,
        )

    def sequence_values(self, latents: Tensor, actions: Tensor, task_ids: Tensor, step_valid: Tensor | None = None) -> Tensor:
        """Scalar values ``[B, T]`` at every latent token of the windows (arguments as in
        :meth:`forward_sequence`): what bootstrapping needs, without the other heads."""
        y_latent, _ = self._sequence(latents, actions, task_ids, step_valid, None)
        return self.value_support.logits_to_scalar(self.heads.value(y_latent))

    def _sequence(
        self, latents: Tensor, actions: Tensor, task_ids: Tensor, step_valid: Tensor | None, router: list[RouterInfo] | None
    ) -> tuple[Tensor, Tensor]:
        """Transformer outputs ``[B, T, D]`` at the latent tokens and at the action tokens."""
        b, t, _ = latents.shape
        if step_valid is None:
            step_valid = torch.ones(b, t, dtype=torch.bool, device=latents.device)
        tokens = self._step_tokens(latents, actions, task_ids)
        positions, valid = self._step_positions(step_valid)
        y, _ = self.transformer(tokens, positions, valid, router_info=router, expert_mask=self._experts_for(task_ids))
        y = y.view(b, t, 2, -1)
        return y[:, :, 0], y[:, :, 1]

    def initial_inference(
        self,
        latents: Tensor,
        actions: Tensor,
        task_ids: Tensor,
        step_valid: Tensor | None = None,
    ) -> RootInference:
        """Root of a search: context steps ``0..T-2`` (latent + action) and the root latent.

        Args:
            latents: ``[B, T, D]``; ``latents[:, -1]`` is the root (must be a valid step).
            actions: ``[B, T-1]`` long (``[B, T-1, action_dim]`` float in a continuous suite),
                the actions taken after each context latent.
            task_ids: ``[B]`` long.
            step_valid: ``[B, T]`` bool, False for left padding; None = all valid.
        """
        b, t, _ = latents.shape
        if tuple(actions.shape[:2]) != (b, t - 1):
            raise ValueError(f"initial_inference: actions must be [B, T-1] = {(b, t - 1)}, got {tuple(actions.shape)}")
        if step_valid is None:
            step_valid = torch.ones(b, t, dtype=torch.bool, device=latents.device)
        padded_actions = torch.cat([actions, actions.new_zeros(b, 1, *actions.shape[2:])], dim=1)
        tokens = self._step_tokens(latents, padded_actions, task_ids)[:, :-1]
        positions, valid = self._step_positions(step_valid)
        positions, valid = positions[:, :-1], valid[:, :-1]
        y, kv = self.transformer(tokens, positions, valid, expert_mask=self._experts_for(task_ids))
        root = y[:, -1]
        value_logits = self.heads.value(root)
        return RootInference(
            value=self.value_support.logits_to_scalar(value_logits),
            value_logits=value_logits,
            policy_logits=self.mask_policy(self.heads.policy(root), task_ids),
            latent=latents[:, -1],
            cache=KVCache(kv=kv, positions=positions, valid=valid),
        )

    def recurrent_inference(
        self,
        cache: KVCache,
        actions: Tensor,
        task_ids: Tensor,
        position: Tensor | None = None,
    ) -> RecurrentOutput:
        """One imagined step on top of ``cache``: action token, then predicted latent token.

        Args:
            cache: tokens so far; the last valid token must be a latent token.
            actions: ``[B]`` long, or ``[B, action_dim]`` float in a continuous suite.
            task_ids: ``[B]`` long.
            position: ``[B]`` long position of the new action token; by default one past
                the cache's largest valid position.
        """
        b = actions.shape[0]
        if position is None:
            position = cache.next_position()
        task = self._task_bias(task_ids)
        pos_a = position.view(b, 1)
        ones = torch.ones(b, 1, dtype=torch.bool, device=actions.device)
        a_tok = self.embed_actions(actions).unsqueeze(1) + task
        experts = self._experts_for(task_ids)
        y_a, kv_a = self.transformer(a_tok, pos_a, ones, cache, expert_mask=experts)
        reward_logits = self.heads.reward(y_a[:, 0])
        next_latent = self.heads.next_latent(y_a[:, 0])

        z_tok = self.latent_token(next_latent).unsqueeze(1) + task
        y_z, kv_z = self.transformer(z_tok, pos_a + 1, ones, cache.append(kv_a, pos_a, ones), expert_mask=experts)
        value_logits = self.heads.value(y_z[:, 0])
        return RecurrentOutput(
            reward=self.reward_support.logits_to_scalar(reward_logits),
            reward_logits=reward_logits,
            next_latent=next_latent,
            value=self.value_support.logits_to_scalar(value_logits),
            value_logits=value_logits,
            policy_logits=self.mask_policy(self.heads.policy(y_z[:, 0]), task_ids),
            new_token_kv=torch.cat([kv_a, kv_z], dim=-2),
        )

"""Staged LoRA linear layers: the capacity that Dynamic Parameter Scaling adds online.

A :class:`LoRALinear` holds a base weight ``W0`` (and bias) plus one low-rank adapter per
stage after stage 0. At stage ``s`` its effective weight is

    a0 * W0 + sum_{j=1..s} a_j * (alpha / r) * B_j A_j

where every scale ``a = 1 + bound * tanh(logit)`` stays within ``[1 - bound, 1 + bound]``
(the logits start at 0, so every scale starts at 1). ``A_j`` starts small and random and
``B_j`` at zero, so entering a stage leaves the layer's output unchanged. Which of these
parameters train in which stage is decided by :func:`set_stage`; this module only computes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LoRALinear(nn.Module):
    """``nn.Linear`` with ``num_stages - 1`` staged low-rank adapters.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        num_stages: total stages S (stage 0 uses the base only; adapters 1..S-1).
        rank, alpha: adapter rank r and scaling alpha (the update is scaled by alpha / r).
        dropout: dropout on the adapter input (training only).
        scale_bound: how far each learnable scale may move from 1.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        num_stages: int = 1,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        scale_bound: float = 0.2,
    ) -> None:
        super().__init__()
        if num_stages < 1 or rank < 1:
            raise ValueError(f"LoRALinear needs num_stages >= 1 and rank >= 1, got {num_stages}, {rank}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self._reset_base()
        self.num_adapters = num_stages - 1
        self.rank, self.scaling, self.scale_bound = rank, alpha / rank, scale_bound
        self.lora_A = nn.ParameterList(nn.Parameter(torch.randn(rank, in_features) * 0.01) for _ in range(self.num_adapters))
        self.lora_B = nn.ParameterList(nn.Parameter(torch.zeros(out_features, rank)) for _ in range(self.num_adapters))
        self.lora_scale_logits = nn.Parameter(torch.zeros(self.num_adapters))
        self.lora_base_scale_logit = nn.Parameter(torch.zeros(()))
        self.drop = nn.Dropout(dropout)
        self.stage = 0

    def _reset_base(self) -> None:
        # The same initialisation as nn.Linear, so a LoRA model at stage 0 trains like a plain one.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def scales(self) -> tuple[Tensor, Tensor]:
        """``(a0, a [num_adapters])``, each in ``[1 - bound, 1 + bound]``."""
        a0 = 1 + self.scale_bound * torch.tanh(self.lora_base_scale_logit)
        return a0, 1 + self.scale_bound * torch.tanh(self.lora_scale_logits)

    def forward(self, x: Tensor) -> Tensor:
        if self.stage == 0:
            return F.linear(x, self.weight, self.bias)
        a0, a = self.scales()
        y = F.linear(x, self.weight * a0, self.bias)
        h = self.drop(x)
        for j in range(self.stage):
            y = y + (a[j] * self.scaling) * F.linear(F.linear(h, self.lora_A[j]), self.lora_B[j])
        return y

    @torch.no_grad()
    def merged_weight(self) -> Tensor:
        """The effective weight at the current stage."""
        if self.stage == 0:
            return self.weight.clone()
        a0, a = self.scales()
        w = self.weight * a0
        for j in range(self.stage):
            w = w + (a[j] * self.scaling) * (self.lora_B[j] @ self.lora_A[j])
        return w

    def merge(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing what this layer computes now (in eval mode)."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        out.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.merged_weight())
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, adapters={self.num_adapters}, rank={self.rank}, stage={self.stage}"


def lora_layers(module: nn.Module) -> list[LoRALinear]:
    return [m for m in module.modules() if isinstance(m, LoRALinear)]


def merge_lora(module: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` inside ``module`` by its merged ``nn.Linear`` (in place)."""
    for name, child in list(module.named_children()):
        if isinstance(child, LoRALinear):
            setattr(module, name, child.merge())
        else:
            merge_lora(child)
    return module


def set_stage(module: nn.Module, stage: int, freeze_others: bool = True) -> None:
    """Activate adapters ``1..stage`` in every LoRA layer of ``module`` and set what trains.

    Stage 0: the base weights train, adapters and scales do not. Stage ``s >= 1``: base weights
    are frozen; ``a0``, adapter ``s`` (A and B) and the scales of adapters ``1..s`` train;
    the A and B of earlier adapters stay frozen. With ``freeze_others`` every other parameter of
    ``module`` (norms, routers, shared experts, embeddings inside it) is frozen from stage 1 on.
    """
    layers = lora_layers(module)
    if layers and not 0 <= stage <= layers[0].num_adapters:
        raise ValueError(f"stage {stage} out of range: this model has {layers[0].num_adapters} adapter stages after stage 0")
    lora_params = set()
    for layer in layers:
        layer.stage = stage
        layer.weight.requires_grad_(stage == 0)
        if layer.bias is not None:
            layer.bias.requires_grad_(stage == 0)
        layer.lora_base_scale_logit.requires_grad_(stage >= 1)
        layer.lora_scale_logits.requires_grad_(stage >= 1)
        for j in range(layer.num_adapters):
            layer.lora_A[j].requires_grad_(j == stage - 1)
            layer.lora_B[j].requires_grad_(j == stage - 1)
        lora_params.update(id(p) for p in layer.parameters())
    if freeze_others:
        for p in module.parameters():
            if id(p) not in lora_params:
                p.requires_grad_(stage == 0)


def _to_lora(linear: nn.Linear, num_stages: int, rank: int, alpha: float, dropout: float, scale_bound: float) -> LoRALinear:
    layer = LoRALinear(linear.in_features, linear.out_features, linear.bias is not None, num_stages, rank, alpha, dropout, scale_bound)
    with torch.no_grad():
        layer.weight.copy_(linear.weight)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias)
    return layer.to(device=linear.weight.device, dtype=linear.weight.dtype)


def inject_lora(
    transformer: nn.Module, targets: tuple[str, ...], num_stages: int, rank: int, alpha: float, dropout: float, scale_bound: float
) -> int:
    """Replace the targeted linears of a transformer by :class:`LoRALinear` with the same base
    weights; returns how many were replaced. Targets: ``attention`` (q/k/v and output
    projections), ``experts`` (routed MoE experts), ``ffn`` (dense feed-forward blocks and the
    shared expert). Routers, norms and embeddings are never adapted."""
    from scalezero.model.moe import FeedForward, MoE
    from scalezero.model.transformer import SelfAttention

    def swap(parent: nn.Module, names: tuple[str, ...]) -> int:
        for name in names:
            setattr(parent, name, _to_lora(getattr(parent, name), num_stages, rank, alpha, dropout, scale_bound))
        return len(names)

    expert_ffns = {id(e) for m in transformer.modules() if isinstance(m, MoE) for e in m.experts}
    count = 0
    for module in list(transformer.modules()):
        if isinstance(module, SelfAttention) and "attention" in targets:
            count += swap(module, ("qkv", "out"))
        elif isinstance(module, FeedForward):
            kind = "experts" if id(module) in expert_ffns else "ffn"
            if kind in targets:
                count += swap(module, ("fc_in", "fc_out"))
    return count

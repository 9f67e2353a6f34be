"""Mixture-of-Experts feed-forward layer (ScaleZero's backbone), and the dense FFN it replaces.

Each token is routed to its top-k experts by a linear router; the output is the sum of those
experts' outputs weighted by their router probabilities (Switch-style: the probabilities are
not renormalised over the top k, so the router receives gradient even with k = 1), plus an
optional always-on shared expert. Dispatch is batched: one gather and one scatter-add per
expert, no loop over tokens. Routing statistics and the auxiliary losses come back in a
:class:`RouterInfo` so callers decide what to log and what to train on; nothing is stored
on the module during forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FeedForward(nn.Module):
    """Dense FFN: Linear(D, hD) -> GELU -> Linear(hD, D) -> Dropout (also the expert network)."""

    def __init__(self, dim: int, hidden_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc_in = nn.Linear(dim, hidden_mult * dim)
        self.fc_out = nn.Linear(hidden_mult * dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc_out(F.gelu(self.fc_in(x))))


@dataclass
class RouterInfo:
    """What one MoE layer's router did for a batch of ``N`` tokens.

    Attributes:
        expert_index: ``[N, k]`` long, chosen experts per token (for per-task load statistics).
        balance_loss: scalar, Switch load-balancing loss ``E * sum_e f_e * P_e`` (1 when
            perfectly balanced), where ``f_e`` is the fraction of routed slots sent to expert
            ``e`` and ``P_e`` its mean router probability.
        z_loss: scalar, mean squared log-sum-exp of the router logits (keeps logits small).
        load: ``[E]`` fraction of routed slots per expert.
    """

    expert_index: Tensor
    balance_loss: Tensor
    z_loss: Tensor
    load: Tensor


class MoE(nn.Module):
    """Top-k routed experts plus an optional shared expert.

    Args:
        dim: token width D.
        num_experts: routed experts E (>= 1).
        top_k: experts per token (1 <= k <= E).
        shared_expert: add an always-on expert to every token.
        dropout: dropout inside each expert.
    """

    def __init__(self, dim: int, num_experts: int, top_k: int = 1, shared_expert: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"MoE needs 1 <= top_k <= num_experts, got top_k={top_k}, num_experts={num_experts}")
        self.num_experts = num_experts
        self.top_k = top_k
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(dim, dropout=dropout) for _ in range(num_experts))
        self.shared = FeedForward(dim, dropout=dropout) if shared_expert else None

    def forward(self, x: Tensor, allowed: Tensor | None = None) -> tuple[Tensor, RouterInfo]:
        """``x [..., D]`` -> ``(y [..., D], RouterInfo)``. ``allowed [..., E]`` (bool, optional)
        restricts each token's routing to some experts (task clustering); it must leave at
        least ``top_k`` experts per token."""
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # [N, D]
        logits = self.router(tokens)  # [N, E]
        if allowed is not None:
            logits = logits.masked_fill(~allowed.reshape(-1, self.num_experts), float("-inf"))
        probs = logits.softmax(dim=-1)
        gate, index = probs.topk(self.top_k, dim=-1)  # [N, k]
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            token_idx, slot = (index == e).nonzero(as_tuple=True)
            if token_idx.numel() == 0:
                continue
            y = expert(tokens[token_idx]) * gate[token_idx, slot].unsqueeze(-1)
            out.index_add_(0, token_idx, y)
        if self.shared is not None:
            out = out + self.shared(tokens)
        load = F.one_hot(index, self.num_experts).float().sum(dim=(0, 1)) / index.numel()
        balance = self.num_experts * (load * probs.mean(dim=0)).sum()
        z_loss = torch.logsumexp(logits, dim=-1).pow(2).mean()  # masked logits are -inf: they add 0
        return out.view(shape), RouterInfo(index, balance, z_loss, load.detach())

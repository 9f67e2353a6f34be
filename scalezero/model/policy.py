"""Continuous-action policy: a tanh-squashed diagonal Gaussian over padded action dimensions.

Continuous tasks act in ``[-1, 1]^d``; a suite pads every task's actions to the largest ``d``
and masks the dimensions a task does not have (``dim_mask``). The policy head emits, per
dimension, the mean ``mu`` of a Gaussian in pre-squash space and a raw scale; an action is
``tanh(u)`` with ``u ~ N(mu, sigma)``. Its log-density (used by the Sampled MuZero policy
loss on the actions the search considered) is exact, including the ``log(1 - a^2)``
change-of-variables term, and sums over the task's own dimensions only; padded dimensions
are always 0 in actions and contribute nothing anywhere.

Why squashing: actions stay inside the box without clipping, so the density of every
sampled action is well defined (clipping would put probability mass on the bounds).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_STD_MIN = -5.0
LOG_STD_MAX = 1.0
EDGE = 1.0 - 1e-6
"""Actions are clamped to ``[-EDGE, EDGE]`` before ``atanh`` so stored boundary actions keep a
finite density."""
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class SquashedGaussian:
    """Distribution over ``[-1, 1]^D`` from policy-head outputs ``params [..., 2D]``.

    ``dim_mask [..., D]`` (broadcastable) marks the task's own dimensions. ``init_std`` is the
    standard deviation (in pre-squash space) that a zero raw scale maps to, i.e. the policy's
    spread at initialisation, when the head's last layer is zero.
    """

    def __init__(self, params: Tensor, dim_mask: Tensor, init_std: float = 0.5) -> None:
        mu, raw = params.float().chunk(2, dim=-1)
        span = LOG_STD_MAX - LOG_STD_MIN
        frac = (math.log(init_std) - LOG_STD_MIN) / span
        offset = math.log(frac / (1.0 - frac))
        self.mu = mu
        self.log_std = LOG_STD_MIN + span * torch.sigmoid(raw + offset)
        self.mask = dim_mask.to(mu.dtype).expand_as(mu)

    def mode(self) -> Tensor:
        """``[..., D]`` the squashed mean ``tanh(mu)`` (0 in padded dimensions)."""
        return torch.tanh(self.mu) * self.mask

    def sample(self, num: int, generator: torch.Generator | None = None, std_scale: float = 1.0) -> Tensor:
        """``[..., num, D]`` independent samples (padded dimensions 0); ``std_scale`` widens
        (>1) or narrows the spread, e.g. for exploration."""
        shape = self.mu.shape[:-1] + (num, self.mu.shape[-1])
        eps = torch.randn(shape, generator=generator, device=self.mu.device, dtype=self.mu.dtype)
        u = self.mu.unsqueeze(-2) + std_scale * self.log_std.exp().unsqueeze(-2) * eps
        return torch.tanh(u) * self.mask.unsqueeze(-2)

    def log_prob(self, actions: Tensor) -> Tensor:
        """Log-density of ``actions [..., K, D]`` (K candidates per distribution) -> ``[..., K]``."""
        a = actions.float().clamp(-EDGE, EDGE)
        u = torch.atanh(a)
        mu, log_std, mask = self.mu.unsqueeze(-2), self.log_std.unsqueeze(-2), self.mask.unsqueeze(-2)
        z = (u - mu) / log_std.exp()
        per_dim = -0.5 * z.pow(2) - log_std - _HALF_LOG_2PI - torch.log1p(-a.pow(2))
        return (per_dim * mask).sum(-1)

    def entropy(self) -> Tensor:
        """``[...]`` entropy of the pre-squash Gaussian over the task's dimensions (a bonus that
        keeps the policy from collapsing; the squashed entropy has no closed form)."""
        return ((self.log_std + 0.5 + _HALF_LOG_2PI) * self.mask).sum(-1)

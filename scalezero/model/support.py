"""Categorical representation of scalars (rewards and values).

Returns in different tasks span very different ranges. Following MuZero, scalars are
first squashed with the invertible transform ``h`` and then represented as a
categorical distribution over integer bins in the transformed space. The network
predicts logits over the bins and is trained with cross-entropy against a "two-hot"
target; the scalar prediction is the inverse transform of the expected bin. The
``two_hot_scalar`` kind keeps the bins but splits and reads out in the scalar's own units
(DreamerV3), so a prediction is the mean of its targets rather than ``h^-1`` of their mean
transform, which is lower for positive, varying targets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scalezero.config import SUPPORT_TARGETS

DEFAULT_EPS = 1e-3


def value_transform(x: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    """Squash a scalar: ``h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x`` (elementwise).

    ``sqrt(|x| + 1) - 1`` is evaluated as ``|x| / (sqrt(|x| + 1) + 1)`` to avoid
    cancellation for small ``|x|`` in float32.
    """
    a = x.abs()
    return torch.sign(x) * (a / (torch.sqrt(a + 1.0) + 1.0)) + eps * x


def inverse_value_transform(y: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    """Exact closed-form inverse of :func:`value_transform` (elementwise).

    With ``u = sqrt(|x| + 1)`` and ``a = |y|``, ``a = (u - 1) + eps (u^2 - 1)``; solving the
    quadratic for ``u`` and rationalising twice gives

        u - 1 = 4 a (a + 1 + eps) / ((1 + 2 eps + 2 a + s) (1 + s)),  s = sqrt(1 + 4 eps (1 + eps + a))

    which has no cancellation, so the inverse is accurate in float32 near zero as well
    as for large values. Then ``|x| = (u - 1)(u + 1)``.
    """
    a = y.abs()
    s = torch.sqrt(1.0 + 4.0 * eps * (1.0 + eps + a))
    u_minus_1 = 4.0 * a * (a + 1.0 + eps) / ((1.0 + 2.0 * eps + 2.0 * a + s) * (1.0 + s))
    return torch.sign(y) * u_minus_1 * (u_minus_1 + 2.0)


class Support:
    """``2 * size + 1`` bins at ``scale * (-size..size)`` of the transformed space.

    Scalars whose transform falls outside ``[-size * scale, size * scale]`` are clamped to the
    edge bins.
    """

    def __init__(self, size: int, eps: float = DEFAULT_EPS, scale: float = 1.0, target: str = "two_hot", sigma: float = 0.75) -> None:
        if size < 1:
            raise ValueError(f"Support size must be >= 1, got {size}")
        if not scale > 0:
            raise ValueError(f"Support scale must be > 0, got {scale}")
        if target not in SUPPORT_TARGETS:
            raise ValueError(f"Support target must be one of {SUPPORT_TARGETS}, got {target!r}")
        if not sigma > 0:
            raise ValueError(f"Support sigma must be > 0, got {sigma}")
        self.size = int(size)
        self.eps = float(eps)
        self.scale = float(scale)
        self.target = target
        self.sigma = float(sigma)

    @property
    def num_bins(self) -> int:
        """Number of categories, ``2 * size + 1``."""
        return 2 * self.size + 1

    def bins(self, like: Tensor) -> Tensor:
        """Bin centres ``scale * [-size..size]`` as floats on ``like``'s device and dtype."""
        return torch.arange(-self.size, self.size + 1, device=like.device, dtype=like.dtype) * self.scale

    @property
    def max_scalar(self) -> float:
        """Largest scalar magnitude representable without clamping."""
        return float(inverse_value_transform(torch.tensor(self.size * self.scale, dtype=torch.float64), self.eps))

    def scalar_to_two_hot(self, x: Tensor) -> Tensor:
        """Scalars ``[...]`` -> two-hot targets ``[..., bins]`` (rows sum to 1).

        The transformed scalar is split between its two neighbouring bins in proportion to
        its distance to each, so the expected bin equals the transform.
        """
        x, y = self._in_bins(x)
        low = torch.floor(y)
        return self._split(low, y - low)

    def _in_bins(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(x as float, its transform in bin units clamped to the support)``."""
        x = x.float() if not torch.is_floating_point(x) else x
        return x, (value_transform(x, self.eps) / self.scale).clamp(-self.size, self.size)

    def _split(self, low: Tensor, frac: Tensor) -> Tensor:
        """Two-hot rows ``[..., bins]``: ``1 - frac`` on bin ``low`` (in ``-size..size``), ``frac``
        on the bin above it (the same bin at the top edge)."""
        low_idx = (low + self.size).long().clamp(0, self.num_bins - 1)
        high_idx = (low_idx + 1).clamp(max=self.num_bins - 1)
        out = torch.zeros(*frac.shape, self.num_bins, device=frac.device, dtype=frac.dtype)
        out.scatter_add_(-1, low_idx.unsqueeze(-1), (1.0 - frac).unsqueeze(-1))
        out.scatter_add_(-1, high_idx.unsqueeze(-1), frac.unsqueeze(-1))
        return out

    def bin_values(self, like: Tensor) -> Tensor:
        """The scalars the bins stand for, ``h^-1`` of :meth:`bins`, on ``like``'s device and dtype."""
        return inverse_value_transform(self.bins(like), self.eps)

    def scalar_to_two_hot_scalar(self, x: Tensor) -> Tensor:
        """Scalars ``[...]`` -> two-hot targets ``[..., bins]`` split in the scalar's units: the
        two neighbouring bins (the same pair :meth:`scalar_to_two_hot` picks) share the mass in
        proportion to the scalar's distance to each bin's value, so the expected bin value
        equals the scalar (clamped to :attr:`max_scalar`)."""
        x, y = self._in_bins(x)
        low = torch.floor(y).clamp(-self.size, self.size - 1)
        lo_v = inverse_value_transform(low * self.scale, self.eps)
        hi_v = inverse_value_transform((low + 1.0) * self.scale, self.eps)
        return self._split(low, ((x - lo_v) / (hi_v - lo_v)).clamp(0.0, 1.0))

    def scalar_to_hl_gauss(self, x: Tensor) -> Tensor:
        """Scalars ``[...]`` -> histogram targets ``[..., bins]`` (HL-Gauss, Imani & White 2018;
        Farebrother et al. 2024): the mass a Gaussian centred on the transformed scalar, with
        standard deviation ``sigma`` bin widths, puts on each bin's interval; the mass beyond
        the edge bins' outer bounds goes to the edge bins, so rows sum to 1.

        Neighbouring scalars get overlapping targets, which spreads what is learned about one
        return to its neighbours instead of fitting each target's exact bin pair.
        """
        x, y = self._in_bins(x)
        edges = torch.arange(-self.size - 0.5, self.size + 1.0, device=x.device, dtype=x.dtype)  # [bins + 1]
        cdf = torch.special.ndtr((edges - y.unsqueeze(-1)) / self.sigma)
        cdf[..., 0] = 0.0
        cdf[..., -1] = 1.0
        return cdf[..., 1:] - cdf[..., :-1]

    def scalar_to_target(self, x: Tensor) -> Tensor:
        """Scalars ``[...]`` -> training targets ``[..., bins]`` of this support's kind
        (``two_hot``, ``hl_gauss`` or ``two_hot_scalar``)."""
        if self.target == "hl_gauss":
            return self.scalar_to_hl_gauss(x)
        if self.target == "two_hot_scalar":
            return self.scalar_to_two_hot_scalar(x)
        return self.scalar_to_two_hot(x)

    def probs_to_scalar(self, probs: Tensor) -> Tensor:
        """Distribution over bins ``[..., bins]`` -> scalar ``[...]``: the expected bin, inverted
        (``two_hot``, ``hl_gauss``), or the expected bin value (``two_hot_scalar``)."""
        if self.target == "two_hot_scalar":
            return (probs * self.bin_values(probs)).sum(-1)
        expected = (probs * self.bins(probs)).sum(-1)
        return inverse_value_transform(expected, self.eps)

    def logits_to_scalar(self, logits: Tensor) -> Tensor:
        """Logits over bins ``[..., bins]`` -> scalar ``[...]`` (softmax expectation, inverted)."""
        return self.probs_to_scalar(torch.softmax(logits.float(), dim=-1))

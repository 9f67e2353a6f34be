"""Prediction heads read from transformer outputs.

Value and policy are read at latent tokens (a state), reward and next latent at action
tokens (a state-action pair). Every head ends in a zero-initialised linear layer, so at
initialisation the policy is uniform, value and reward distributions are uniform over
the bins (expected transformed scalar 0) and the next-latent prediction is the uniform
SimNorm point (with LayerNorm latents: the norm's bias); training moves them away from these
neutral starting points.
"""

from __future__ import annotations

from torch import Tensor, nn

from scalezero.config import ModelConfig
from scalezero.model.encoders import latent_norm


class Head(nn.Module):
    """LayerNorm -> Linear -> LayerNorm -> GELU -> Linear (last layer zero-initialised).

    Shape: ``[..., in_dim] -> [..., out_dim]``.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Linear(hidden, out_dim),
        )
        last = self.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class NextLatentHead(nn.Module):
    """Predicts the next latent from an action token: :class:`Head` then the latent norm.

    Shape: ``[..., D] -> [..., D]``, in the same space as the encoders' latents.
    """

    def __init__(self, dim: int, hidden: int, norm: nn.Module) -> None:
        super().__init__()
        self.head = Head(dim, hidden, dim)
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.head(x))


class Heads(nn.Module):
    """All four heads of the world model.

    Attributes:
        value: latent token -> value logits ``[..., bins]``.
        policy: latent token -> policy logits ``[..., num_actions]`` (unmasked), or the
            parameters ``[..., 2 * action_dim]`` of a continuous policy.
        reward: action token -> reward logits ``[..., bins]``.
        next_latent: action token -> next latent ``[..., D]``.
    """

    def __init__(self, cfg: ModelConfig, policy_outputs: int) -> None:
        super().__init__()
        bins = 2 * cfg.support_size + 1
        d, h = cfg.embed_dim, cfg.mlp_hidden
        self.value = Head(d, h, bins)
        self.policy = Head(d, h, policy_outputs)
        self.reward = Head(d, h, bins)
        self.next_latent = NextLatentHead(d, h, latent_norm(cfg))

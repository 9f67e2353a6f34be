"""EfficientZero-style temporal consistency: a SimSiam projection of latents.

The predicted next latent goes through a projector and a predictor; the encoded next
observation goes through the same projector without gradient (stop-gradient, SimSiam). The loss
``1 - cosine`` is 0 when the two agree in direction, so the dynamics learn to predict what the
encoder will see, in a space where collapse is avoided by the asymmetry (predictor on one side,
stop-gradient on the other).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConsistencyProjector(nn.Module):
    """Projector ``D -> h -> D`` and predictor ``D -> h -> D`` (MLPs with LayerNorm and GELU)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.projector = nn.Sequential(nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.predictor = nn.Sequential(nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, dim))

    def loss(self, predicted: Tensor, observed: Tensor) -> Tensor:
        """``1 - cos(predictor(projector(predicted)), sg(projector(observed)))`` per position ``[...]``."""
        online = self.predictor(self.projector(predicted))
        with torch.no_grad():
            target = self.projector(observed)
        return 1.0 - F.cosine_similarity(online, target, dim=-1)

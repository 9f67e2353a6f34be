"""How far bootstrapped value targets settle below the true value under each read-out of the
categorical support.

    python benchmarks/readout_bias.py      # seconds

A model of the learner's target computation, no network: a state whose future pays a reward
of 1 with probability ``q`` at every step and ends with probability ``h`` per step. The
value's distribution is fitted exactly (the mixture of the targets over every outcome of the
next ``td_steps`` steps), read out, and fed back as the bootstrap of the next round, until it
settles. ``two_hot`` reads out ``h^-1`` of the expected transformed value, below the targets'
mean whenever they vary, and the bootstrap passes that on; ``two_hot_scalar`` reads out the
mean. Writes ``benchmarks/results/readout_bias.json``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

from scalezero.model.support import Support

RESULTS = Path(__file__).resolve().parent / "results"
CASES = [(0.1, 0.01), (0.2, 0.02), (0.3, 0.005), (0.05, 0.02)]


def settled_value(kind: str, q: float, h: float, discount: float = 0.997, n: int = 5, size: int = 50) -> float:
    """The value at which the fitted-and-read-out bootstrap stops moving."""
    support = Support(size, target=kind)
    outcomes = []  # (probability, discounted reward sum, whether the bootstrap applies)
    for steps in range(n + 1):  # the episode ends after `steps` steps (n: it goes on)
        p_len = (1 - h) ** steps * (h if steps < n else 1.0)
        for rewards in itertools.product((0, 1), repeat=steps):
            k = sum(rewards)
            ret = sum(discount**i * r for i, r in enumerate(rewards))
            outcomes.append((p_len * q**k * (1 - q) ** (steps - k), ret, steps == n))
    probs = torch.tensor([o[0] for o in outcomes], dtype=torch.float64)
    value = 0.0
    for _ in range(10_000):
        z = torch.tensor([r + (discount**n * value if boot else 0.0) for _, r, boot in outcomes], dtype=torch.float64)
        new = float(support.probs_to_scalar((probs[:, None] * support.scalar_to_target(z)).sum(0)))
        if abs(new - value) < 1e-7:
            break
        value = new
    return value


def main() -> None:
    rows = []
    for q, h in CASES:
        biased, unbiased = settled_value("two_hot", q, h), settled_value("two_hot_scalar", q, h)
        rows.append({"reward_prob": q, "end_prob": h, "two_hot": biased, "two_hot_scalar": unbiased, "ratio": biased / unbiased})
        print(f"q={q} h={h}: two_hot {biased:.3f}  two_hot_scalar {unbiased:.3f}  ratio {biased / unbiased:.3f}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "readout_bias.json"
    path.write_text(json.dumps({"discount": 0.997, "td_steps": 5, "support_size": 50, "cases": rows}, indent=2))
    print("wrote", path)


if __name__ == "__main__":
    main()

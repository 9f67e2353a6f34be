"""Batched MCTS inside a learned model: pUCT (MuZero) and Gumbel MuZero roots.

``puct_search`` and ``gumbel_search`` (or ``run_search``, which picks one by the config) take
the model's outputs at a batch of roots and a ``recurrent`` callback, and return the action to play, the policy training target, the root search value, and
per-action visit counts and Q values. Trees are flat preallocated arrays walked by numba
kernels (``tree.py``, ``gumbel.py``); the search never sees latents or task ids.
"""

from scalezero.search.mcts import RecurrentFn, Root, SearchOutput, gumbel_search, puct_search, run_search

__all__ = ["RecurrentFn", "Root", "SearchOutput", "gumbel_search", "puct_search", "run_search"]

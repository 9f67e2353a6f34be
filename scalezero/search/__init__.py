"""Batched MCTS inside a learned model: pUCT (MuZero) and Gumbel MuZero roots.

``run_search`` takes the model's outputs at a batch of roots and a ``recurrent`` callback,
and returns the action to play, the policy training target, the root search value, and
per-action visit counts and Q values. Trees are flat preallocated arrays walked by numba
kernels (``tree.py``, ``gumbel.py``); the search never sees latents or task ids.
"""

from scalezero.search.mcts import RecurrentFn, Root, SearchOutput, run_search

__all__ = ["RecurrentFn", "Root", "SearchOutput", "run_search"]

"""Breadth-first solver: the shortest command sequence that wins a game.

The search runs over physical states (player room, item locations, door and container
states) with the game's own rules (:class:`~scalezero.tasks.text.world.World`). With
``prune=True`` it only tries commands that can be part of a shortest win: moving, opening,
unlocking, taking goal items and keys, and dropping/putting a goal item exactly where its goal
wants it. Commands left out never shorten a win (there is no carrying limit, so nothing ever
has to be put down elsewhere, and closing or locking only undoes progress), so the pruned
search finds the same length as the full one, in far fewer states; a test checks this on the
small games.
"""

from __future__ import annotations

from collections import deque

from scalezero.tasks.text.world import CLOSE, DROP, INVENTORY_VERB, LOCK, LOOK, PUT, TAKE, Game, World


def useful_commands(game: Game) -> list[int]:
    """Indices of the commands a shortest win can use (see the module docstring)."""
    goal_items = {goal.item: goal for goal in game.goals}
    keys = {i for i, it in enumerate(game.items) if it.is_key}
    out = []
    for idx, cmd in enumerate(game.commands):
        v = cmd.verb
        if v in (LOOK, INVENTORY_VERB, CLOSE, LOCK):
            continue
        if v == TAKE and cmd.a not in goal_items and cmd.a not in keys:
            continue
        if v == DROP and (cmd.a not in goal_items or goal_items[cmd.a].room is None):
            continue
        if v == PUT and (cmd.a not in goal_items or goal_items[cmd.a].container != cmd.b):
            continue
        out.append(idx)
    return out


def shortest_solution(game: Game, prune: bool = True, max_states: int = 2_000_000) -> list[int] | None:
    """Command indices of a shortest winning sequence from the start (None: no win exists).

    ``prune`` restricts the search to :func:`useful_commands`; ``max_states`` bounds the
    number of states visited (a RuntimeError says when it is reached).
    """
    world = World(game)
    candidates = [game.commands[i] for i in (useful_commands(game) if prune else range(len(game.commands)))]
    ids = useful_commands(game) if prune else list(range(len(game.commands)))
    start = world.snapshot()
    parents: dict[tuple, tuple[tuple, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        for idx, cmd in zip(ids, candidates):
            world.restore(state)
            if world.failure(cmd) is not None:
                continue
            world.apply(cmd)
            nxt = world.snapshot()
            if nxt in parents:
                continue
            parents[nxt] = (state, idx)
            if world.all_goals_hold():
                path = []
                node: tuple | None = nxt
                while parents[node] is not None:
                    node, step = parents[node]
                    path.append(step)
                return path[::-1]
            if len(parents) >= max_states:
                raise RuntimeError(f"game {game.name!r}: no win within {max_states} states (raise max_states or prune)")
            queue.append(nxt)
    return None

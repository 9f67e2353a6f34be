"""Procedural generation of text games from a seed and a difficulty level.

A game is built in this order, every choice drawn from :class:`StableRandom` (a fixed,
platform-independent generator, so a seed means the same game on every machine and version):

1. rooms on a grid, connected as a random spanning tree (room 0 is the start), so every room
   has exactly one path from the start and a locked door on it cannot be walked around;
2. *gates*, a chain of locked doors and then locked containers: each locked door closes off a
   subtree inside the previous gate's zone, each locked container stands in the innermost
   zone; the key of every gate lies outside it but inside the previous gate (the first key
   anywhere before the first gate), and the first goal's item lies behind the last gate, so
   every gate must be unlocked to win;
3. closed (unlocked) containers and closed doors on other edges;
4. the quest: each goal item must be dropped in a room or put in an unlocked container other
   than where it starts; distractor items lie anywhere.

Names come from :mod:`scalezero.tasks.text.lexicon` (distinct nouns/materials per game).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

from scalezero.tasks.text import lexicon
from scalezero.tasks.text.world import CLOSED, LOCKED, Exit, Game, Goal, Item, Openable, build_commands, inside

_MASK64 = (1 << 64) - 1


class StableRandom:
    """SplitMix64: a tiny random generator whose stream never changes across platforms or
    library versions (unlike ``random`` and ``numpy.random`` helpers)."""

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK64

    def next64(self) -> int:
        """The next 64-bit value."""
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """An integer in ``[0, n)``."""
        if n <= 0:
            raise ValueError(f"below(n) needs n >= 1, got {n}")
        return self.next64() % n

    def choice(self, seq):
        """One element of a non-empty sequence."""
        return seq[self.below(len(seq))]

    def shuffle(self, items: list) -> None:
        """Shuffle ``items`` in place (Fisher-Yates)."""
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]

    def sample(self, seq, k: int) -> list:
        """``k`` distinct elements of ``seq`` in random order."""
        if k > len(seq):
            raise ValueError(f"cannot draw {k} distinct elements from {len(seq)}")
        pool = list(seq)
        self.shuffle(pool)
        return pool[:k]


@dataclass(frozen=True)
class Level:
    """Size and difficulty of generated games."""

    name: str
    rooms: int
    goals: int
    distractors: int
    """Items no goal needs."""
    containers: int
    """Unlocked containers (they start closed)."""
    closed_doors: int
    """Unlocked doors (they start closed)."""
    locked_doors: int
    """Gates: locked doors, each needing its own key."""
    locked_containers: int
    """Gates: locked containers (after the locked doors in the chain)."""
    max_steps: int
    """Episode cap (truncation)."""


LEVELS: dict[str, Level] = {
    level.name: level
    for level in (
        Level("easy", rooms=2, goals=1, distractors=1, containers=1, closed_doors=0, locked_doors=0, locked_containers=0, max_steps=30),
        Level("medium", rooms=4, goals=2, distractors=3, containers=1, closed_doors=1, locked_doors=0, locked_containers=0, max_steps=60),
        Level("hard", rooms=6, goals=2, distractors=4, containers=2, closed_doors=1, locked_doors=1, locked_containers=0, max_steps=90),
        Level("expert", rooms=9, goals=3, distractors=5, containers=2, closed_doors=2, locked_doors=1, locked_containers=1, max_steps=150),
    )
}  # fmt: skip


class GenerationError(ValueError):
    """A level asks for more than the name pools or the map can give."""


def _check_level(level: Level) -> None:
    need = {
        "rooms": (level.rooms, len(lexicon.ROOM_NAMES)),
        "goals + distractors": (level.goals + level.distractors, len(lexicon.ITEM_NOUNS)),
        "containers": (level.containers + level.locked_containers, len(lexicon.CONTAINER_NOUNS)),
        "doors": (level.closed_doors + level.locked_doors, len(lexicon.DOOR_MATERIALS)),
        "keys": (level.locked_doors + level.locked_containers, len(lexicon.KEY_MATERIALS)),
        "edges": (level.closed_doors + level.locked_doors, level.rooms - 1),
    }
    for what, (asked, most) in need.items():
        if asked > most:
            raise GenerationError(f"level {level.name!r} asks for {asked} {what}; at most {most} are possible")
    if level.rooms < 1 or level.goals < 1 or level.max_steps < 1:
        raise GenerationError(f"level {level.name!r} needs rooms, goals and max_steps >= 1")
    if level.goals > 0 and level.rooms < 2 and level.containers == 0:
        raise GenerationError(f"level {level.name!r}: a goal needs a second room or a container to go to")
    if 2 * level.goals + level.locked_doors + level.locked_containers + 1 > lexicon.MAX_NUMBER:
        raise GenerationError(f"level {level.name!r}: its maximal score exceeds lexicon.MAX_NUMBER = {lexicon.MAX_NUMBER}")


def _grid_tree(rng: StableRandom, n: int) -> tuple[list[int], list[tuple[int, int, str]]]:
    """``n`` rooms as a random spanning tree on a grid: parent per room (-1 for room 0) and the
    edges ``(parent, child, direction from parent)``."""
    cells = {(0, 0): 0}
    where = [(0, 0)]
    parent = [-1]
    edges: list[tuple[int, int, str]] = []
    while len(where) < n:
        r = rng.below(len(where))
        d = rng.choice(lexicon.DIRECTIONS)
        dx, dy = lexicon.DIRECTION_OFFSETS[d]
        cell = (where[r][0] + dx, where[r][1] + dy)
        if cell in cells:
            continue
        cells[cell] = len(where)
        edges.append((r, len(where), d))
        parent.append(r)
        where.append(cell)
    return parent, edges


def _subtree(parent: list[int], root: int) -> set[int]:
    """``root`` and all rooms below it in the tree."""
    out = {root}
    changed = True
    while changed:
        changed = False
        for r, p in enumerate(parent):
            if p in out and r not in out:
                out.add(r)
                changed = True
    return out


def generate_game(level: str | Level, seed: int, name: str | None = None) -> Game:
    """The game of ``level`` (a name in :data:`LEVELS` or a :class:`Level`) and ``seed``;
    the same arguments always give the same game."""
    if isinstance(level, str):
        if level not in LEVELS:
            from scalezero.config import ConfigError

            raise ConfigError(f"unknown text-game level {level!r}; levels: {', '.join(LEVELS)}")
        level = LEVELS[level]
    _check_level(level)
    rng = StableRandom(seed * 1_000_003 + zlib.crc32(level.name.encode()))
    parent, edges = _grid_tree(rng, level.rooms)
    rooms = rng.sample(lexicon.ROOM_NAMES, level.rooms)

    openables: list[Openable] = []
    door_on_edge: dict[int, int] = {}  # child room of an edge -> openable index
    # (gate openable, where its key may go: rooms (codes >= 0), or [inside(previous locked container)])
    gate_key_spots: list[tuple[int, list[int]]] = []

    # 2. the gate chain: locked doors closing nested subtrees, then locked containers.
    door_names = iter(f"{m} door" for m in rng.sample(lexicon.DOOR_MATERIALS, level.closed_doors + level.locked_doors))
    container_nouns = iter(rng.sample(lexicon.CONTAINER_NOUNS, level.containers + level.locked_containers))
    zone, zone_root = set(range(level.rooms)), 0
    for _ in range(level.locked_doors):
        candidates = sorted(zone - {zone_root})
        if not candidates:
            raise GenerationError(f"level {level.name!r}: too few rooms for {level.locked_doors} nested locked doors")
        child = rng.choice(candidates)
        behind = _subtree(parent, child)
        door_on_edge[child] = len(openables)
        gate_key_spots.append((len(openables), sorted(zone - behind)))
        openables.append(Openable(next(door_names), "door", (parent[child], child), LOCKED))
        zone, zone_root = behind, child
    key_inside: int | None = None
    for _ in range(level.locked_containers):
        room = rng.choice(sorted(zone))
        label = f"{rng.choice(lexicon.CONTAINER_ADJECTIVES)} {next(container_nouns)}"
        gate_key_spots.append((len(openables), [inside(key_inside)] if key_inside is not None else sorted(zone)))
        key_inside = len(openables)
        openables.append(Openable(label, "container", (room,), LOCKED))
    gates = [o for o, _ in gate_key_spots]
    if key_inside is not None:
        protected: int | None = inside(key_inside)
    elif level.locked_doors:
        protected = rng.choice(sorted(zone))
    else:
        protected = None

    # 3. unlocked containers and closed doors.
    free = []
    for _ in range(level.containers):
        label = f"{rng.choice(lexicon.CONTAINER_ADJECTIVES)} {next(container_nouns)}"
        free.append(len(openables))
        openables.append(Openable(label, "container", (rng.below(level.rooms),), CLOSED))
    open_edges = [child for _, child, _ in edges if child not in door_on_edge]
    for child in rng.sample(open_edges, level.closed_doors):
        door_on_edge[child] = len(openables)
        openables.append(Openable(next(door_names), "door", (parent[child], child), CLOSED))

    def spots(rooms_allowed: list[int]) -> list[int]:
        """Floors of ``rooms_allowed`` and the unlocked containers in them."""
        allowed = set(rooms_allowed)
        return sorted(rooms_allowed) + [inside(c) for c in free if openables[c].rooms[0] in allowed]

    everywhere = spots(list(range(level.rooms)))

    # 4. keys, goal items and their destinations, distractors.
    entries: list[tuple[str, int, bool]] = []  # (name, location, is_key)
    for (gate, key_rooms), material in zip(gate_key_spots, rng.sample(lexicon.KEY_MATERIALS, len(gate_key_spots))):
        key_spots = key_rooms if key_rooms[0] < 0 else spots(key_rooms)  # inside the previous gate, or rooms
        openables[gate] = replace(openables[gate], key=len(entries))
        entries.append((f"{material} key", rng.choice(key_spots), True))
    nouns = rng.sample(lexicon.ITEM_NOUNS, level.goals + level.distractors)
    goal_specs: list[tuple[int, int]] = []  # (entry index, destination location code)
    for k in range(level.goals):
        start = protected if (k == 0 and protected is not None) else rng.choice(everywhere)
        destinations = [r for r in range(level.rooms) if r != start] + [inside(c) for c in free if inside(c) != start]
        goal_specs.append((len(entries), rng.choice(destinations)))
        entries.append((f"{rng.choice(lexicon.ITEM_ADJECTIVES)} {nouns[k]}", start, False))
    anywhere = everywhere + [inside(o) for o in gates if openables[o].kind == "container"]
    for noun in nouns[level.goals :]:
        entries.append((f"{rng.choice(lexicon.ITEM_ADJECTIVES)} {noun}", rng.choice(anywhere), False))

    # Shuffle the item order (descriptions and commands list items in it) and re-index.
    order = list(range(len(entries)))
    rng.shuffle(order)
    new_index = {old: new for new, old in enumerate(order)}
    items = tuple(Item(entries[old][0], entries[old][1], entries[old][2]) for old in order)
    openables = [replace(op, key=new_index[op.key]) if op.key is not None else op for op in openables]
    goals = tuple(
        Goal(new_index[e], room=dest) if dest >= 0 else Goal(new_index[e], container=-2 - dest) for e, dest in goal_specs
    )

    exits: list[list[Exit]] = [[] for _ in range(level.rooms)]
    for p, child, d in edges:
        door = door_on_edge.get(child)
        exits[p].append(Exit(d, child, door))
        exits[child].append(Exit(lexicon.OPPOSITE[d], p, door))
    ordered = tuple(tuple(sorted(ex, key=lambda e: lexicon.DIRECTIONS.index(e.direction))) for ex in exits)
    game = Game(
        name=name or f"{level.name}-{seed}", level=level.name, seed=seed, rooms=tuple(rooms), exits=ordered,
        items=items, openables=tuple(openables), start_room=0, goals=goals, gates=tuple(gates), max_steps=level.max_steps,
    )  # fmt: skip
    return replace(game, commands=build_commands(game))

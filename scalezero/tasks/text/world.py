"""Game definition and rules of the text games: rooms, items, doors, containers, the quest.

A :class:`Game` is the static, immutable description a generator produces (map, names,
starting state, quest, command list). A :class:`World` is one playthrough's mutable state and
the rules that change it. The world speaks no English: commands fail or succeed with an
*event*, a narration key of :data:`scalezero.tasks.text.lexicon.SENTENCES` plus the names that
fill it, and :mod:`scalezero.tasks.text.narration` turns events and states into sentences.

Rules (what makes a command *legal*: it succeeds and changes the state, except ``look`` and
``inventory``, which are always legal and change nothing):

* ``go <dir>``: the room has an exit that way, and its door (if any) is open.
* ``take <item>``: the item lies in this room, or in an open container in this room.
* ``drop <item>``: the item is carried; it then lies on this room's floor.
* ``put <item> in <container>``: the item is carried; the container is here and open.
* ``open``/``close <door or container>``: it is here (a door: on one of this room's exits)
  and closed (not locked) / open.
* ``unlock``/``lock <door or container> with <key>``: it is here, the key is carried, and it
  is locked / closed. Commands exist only for the key that fits.

A command that is not legal now leaves the state unchanged and reports why ("The pine door
is locked."); it earns nothing and counts as a step.

Rewards: +1 the first time each *milestone* becomes true, +1 more for winning, which ends the
episode (terminated). The milestones of a game are, for every goal "item X ends up at place
P": X is carried for the first time, and X is at P for the first time; and for every *gate*
(a door or container locked at the start) its first unlocking. Generated games make every gate
necessary (the first goal's item lies behind all of them, each key behind the previous gate),
so every winning episode collects every milestone: its return is always
``max_return = 2 * goals + gates + 1``. Winning means every goal holds at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from scalezero.tasks.text import lexicon

#: Item location codes: a room index ``>= 0``, :data:`INVENTORY`, or :func:`inside` ``(c)``.
INVENTORY = -1

#: States of a door or container.
OPEN, CLOSED, LOCKED = 0, 1, 2
STATE_NAMES: tuple[str, ...] = ("open", "closed", "locked")

VERBS: tuple[str, ...] = tuple(lexicon.COMMANDS)
LOOK, INVENTORY_VERB, GO, TAKE, DROP, PUT, OPEN_VERB, CLOSE, UNLOCK, LOCK = range(len(VERBS))
assert VERBS == ("look", "inventory", "go", "take", "drop", "put", "open", "close", "unlock", "lock")


def inside(container: int) -> int:
    """Location code of "inside openable ``container``"."""
    return -2 - container


def container_of(location: int) -> int:
    """The openable a location code ``<= -2`` is inside of (inverse of :func:`inside`)."""
    return -2 - location


@dataclass(frozen=True)
class Item:
    """A portable object: a quest item, a key or a distractor."""

    name: str
    location: int
    """Starting location code (room index, or :func:`inside` of a container)."""
    is_key: bool = False


@dataclass(frozen=True)
class Openable:
    """A door (between two rooms) or a container (in one room, cannot be carried)."""

    name: str
    kind: str
    """``"door"`` or ``"container"``."""
    rooms: tuple[int, ...]
    """The rooms it can be reached from: a door's two rooms, a container's one room."""
    state: int
    """Starting state: :data:`OPEN`, :data:`CLOSED` or :data:`LOCKED`."""
    key: int | None = None
    """Index of the item that locks and unlocks it (None: it has no lock)."""


@dataclass(frozen=True)
class Exit:
    """One way out of a room."""

    direction: str
    room: int
    door: int | None = None
    """Index of the openable (a door) on this exit, if any."""


@dataclass(frozen=True)
class Goal:
    """Quest goal: ``item`` lies on the floor of ``room``, or is inside ``container``."""

    item: int
    room: int | None = None
    container: int | None = None

    @property
    def location(self) -> int:
        """The location code the item must reach."""
        return self.room if self.room is not None else inside(self.container)


@dataclass(frozen=True)
class Command:
    """One entry of a game's command list: a verb and up to two entity indices."""

    verb: int
    a: int = -1
    """Direction index (go), item (take/drop/put) or openable (open/close/lock/unlock)."""
    b: int = -1
    """Container (put) or key item (lock/unlock)."""
    text: str = ""


@dataclass(frozen=True)
class Game:
    """One generated game: everything that does not change while it is played."""

    name: str
    level: str
    seed: int
    rooms: tuple[str, ...]
    exits: tuple[tuple[Exit, ...], ...]
    """Per room, its exits in :data:`~scalezero.tasks.text.lexicon.DIRECTIONS` order."""
    items: tuple[Item, ...]
    openables: tuple[Openable, ...]
    start_room: int
    goals: tuple[Goal, ...]
    gates: tuple[int, ...]
    """Openables locked at the start; each must be unlocked to win."""
    max_steps: int
    commands: tuple[Command, ...] = field(default=())

    @property
    def num_milestones(self) -> int:
        """Rewarded milestones: carry and deliver each goal item, unlock each gate."""
        return 2 * len(self.goals) + len(self.gates)

    @property
    def max_return(self) -> float:
        """Return of every winning episode: one per milestone plus one for the win."""
        return float(self.num_milestones + 1)

    @property
    def command_texts(self) -> tuple[str, ...]:
        """The command list as text; action ``i`` is ``command_texts[i]``."""
        return tuple(c.text for c in self.commands)

    @cached_property
    def exit_map(self) -> tuple[dict[int, Exit], ...]:
        """Per room, direction index -> exit."""
        return tuple({lexicon.DIRECTIONS.index(e.direction): e for e in exits} for exits in self.exits)


def build_commands(game: Game) -> tuple[Command, ...]:
    """Every command that could ever be legal in ``game``, in a fixed order.

    ``look``, ``inventory``; ``go`` for each direction some exit uses; ``take``/``drop`` per
    item; ``open``/``close`` per door or container; ``unlock``/``lock`` per lockable with its
    own key; ``put`` per item and container.
    """
    t = lexicon.COMMANDS
    items = [it.name for it in game.items]
    cmds = [Command(LOOK, text=t["look"]), Command(INVENTORY_VERB, text=t["inventory"])]
    used = {e.direction for exits in game.exits for e in exits}
    for d, name in enumerate(lexicon.DIRECTIONS):
        if name in used:
            cmds.append(Command(GO, d, text=t["go"].format(direction=name)))
    for i, name in enumerate(items):
        cmds.append(Command(TAKE, i, text=t["take"].format(item=name)))
        cmds.append(Command(DROP, i, text=t["drop"].format(item=name)))
    for o, op in enumerate(game.openables):
        cmds.append(Command(OPEN_VERB, o, text=t["open"].format(target=op.name)))
        cmds.append(Command(CLOSE, o, text=t["close"].format(target=op.name)))
    for o, op in enumerate(game.openables):
        if op.key is not None:
            key = items[op.key]
            cmds.append(Command(UNLOCK, o, op.key, text=t["unlock"].format(target=op.name, key=key)))
            cmds.append(Command(LOCK, o, op.key, text=t["lock"].format(target=op.name, key=key)))
    containers = [o for o, op in enumerate(game.openables) if op.kind == "container"]
    for i, name in enumerate(items):
        for c in containers:
            cmds.append(Command(PUT, i, c, text=t["put"].format(item=name, container=game.openables[c].name)))
    return tuple(cmds)


Event = tuple[str, dict[str, str]]
"""A narration key of ``lexicon.SENTENCES`` and the names filling it."""


class World:
    """The mutable state of one playthrough of a :class:`Game` and the rules that change it."""

    def __init__(self, game: Game) -> None:
        if not game.commands:
            raise ValueError(f"game {game.name!r} has no command list; build it with build_commands()")
        self.game = game
        self._milestones = [("hold", g.item) for g in game.goals] + [("goal", k) for k in range(len(game.goals))]
        self._milestones += [("unlock", o) for o in game.gates]
        self.reset()

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Back to the game's starting state."""
        g = self.game
        self.player = g.start_room
        self.item_loc = [it.location for it in g.items]
        self.state = [op.state for op in g.openables]
        self.achieved = [False] * len(self._milestones)
        self.won = False

    def snapshot(self) -> tuple:
        """The physical state as a hashable value (player, item locations, openable states);
        milestones and the win flag are not part of it."""
        return (self.player, tuple(self.item_loc), tuple(self.state))

    def restore(self, snap: tuple) -> None:
        """Return to a :meth:`snapshot` (milestones and the win flag are left as they are)."""
        self.player, locs, states = snap
        self.item_loc = list(locs)
        self.state = list(states)

    @property
    def score(self) -> int:
        """Milestones reached so far, plus one once won."""
        return sum(self.achieved) + int(self.won)

    # --------------------------------------------------------------- queries
    def is_here(self, o: int) -> bool:
        """Door or container ``o`` can be reached from the player's room."""
        return self.player in self.game.openables[o].rooms

    def is_visible(self, i: int) -> bool:
        """Item ``i`` lies in the player's room, or in an open container there."""
        loc = self.item_loc[i]
        if loc == self.player:
            return True
        if loc <= -2:
            c = container_of(loc)
            return self.state[c] == OPEN and self.player in self.game.openables[c].rooms
        return False

    def goal_holds(self, k: int) -> bool:
        """Goal ``k`` holds now."""
        goal = self.game.goals[k]
        return self.item_loc[goal.item] == goal.location

    # ----------------------------------------------------------------- rules
    def failure(self, cmd: Command) -> str | None:
        """Why ``cmd`` cannot be done now (a narration key), or None when it is legal."""
        v, a, b = cmd.verb, cmd.a, cmd.b
        if v == TAKE:
            if self.item_loc[a] == INVENTORY:
                return "already_carried"
            return None if self.is_visible(a) else "not_here"
        if v == DROP:
            return None if self.item_loc[a] == INVENTORY else "not_carried"
        if v == GO:
            ex = self.game.exit_map[self.player].get(a)
            if ex is None:
                return "no_exit"
            return None if ex.door is None or self.state[ex.door] == OPEN else "door_blocks"
        if v == PUT:
            if self.item_loc[a] != INVENTORY:
                return "not_carried"
            if not self.is_here(b):
                return "not_here"
            return (None, "is_closed", "is_locked")[self.state[b]]
        if v == LOOK or v == INVENTORY_VERB:
            return None
        if not self.is_here(a):
            return "not_here"
        s = self.state[a]
        if v == OPEN_VERB:
            return ("already_open", None, "is_locked")[s]
        if v == CLOSE:
            return None if s == OPEN else "already_closed"
        if self.item_loc[b] != INVENTORY:
            return "not_carried"
        if v == UNLOCK:
            return None if s == LOCKED else "not_locked"
        if v == LOCK:
            return ("close_first", None, "already_locked")[s]
        raise ValueError(f"unknown verb {v}")

    def legal_mask(self) -> np.ndarray:
        """``bool [num_commands]``: the commands that are legal now."""
        failure = self.failure
        return np.fromiter((failure(c) is None for c in self.game.commands), dtype=bool, count=len(self.game.commands))

    def _names(self, cmd: Command, reason: str | None) -> dict[str, str]:
        """The names an event of ``cmd`` may mention (extra ones are ignored by the templates)."""
        g = self.game
        v, a, b = cmd.verb, cmd.a, cmd.b
        if v == GO:
            names = {"direction": lexicon.DIRECTIONS[a]}
            ex = g.exit_map[self.player].get(a)
            if ex is not None and ex.door is not None:
                names.update(door=g.openables[ex.door].name, state=STATE_NAMES[self.state[ex.door]])
            return names
        if v in (TAKE, DROP):
            names = {"item": g.items[a].name, "thing": g.items[a].name}
            if v == TAKE and self.item_loc[a] <= -2:
                names["container"] = g.openables[container_of(self.item_loc[a])].name
            return names
        if v == PUT:
            return {"item": g.items[a].name, "container": g.openables[b].name, "target": g.openables[b].name,
                    "thing": g.openables[b].name}  # fmt: skip
        if v in (OPEN_VERB, CLOSE, UNLOCK, LOCK):
            names = {"target": g.openables[a].name, "thing": g.openables[a].name}
            if b >= 0:
                names.update(key=g.items[b].name, item=g.items[b].name)
            return names
        return {}

    def execute(self, cmd: Command) -> tuple[list[Event], float]:
        """Do ``cmd``: the events to narrate and the reward. An illegal command changes
        nothing, earns 0 and yields one event saying why."""
        if self.won:
            raise RuntimeError("the game is already won; reset() before playing on")
        reason = self.failure(cmd)
        if reason is not None:
            return [(reason, self._names(cmd, reason))], 0.0
        names = self._names(cmd, None)
        events: list[Event] = [(self.apply(cmd), names)]
        reward = self._update_milestones()
        if reward:
            events.append(("milestone", {}))
        if self.all_goals_hold():
            self.won = True
            reward += 1.0
            events.append(("won", {}))
        return events, reward

    def apply(self, cmd: Command) -> str:
        """Change the state as the legal command ``cmd`` does (no legality check, no rewards);
        returns its narration key. :meth:`execute` is the checked, rewarded version."""
        v, a, b = cmd.verb, cmd.a, cmd.b
        key = VERBS[v]
        if v == GO:
            self.player = self.game.exit_map[self.player][a].room
        elif v == TAKE:
            if self.item_loc[a] <= -2:
                key = "take_from"
            self.item_loc[a] = INVENTORY
        elif v == DROP:
            self.item_loc[a] = self.player
        elif v == PUT:
            self.item_loc[a] = inside(b)
        elif v == OPEN_VERB or v == UNLOCK:
            self.state[a] = OPEN if v == OPEN_VERB else CLOSED
        elif v == CLOSE or v == LOCK:
            self.state[a] = CLOSED if v == CLOSE else LOCKED
        return key

    def all_goals_hold(self) -> bool:
        """Every goal holds now (the winning condition)."""
        return all(self.goal_holds(k) for k in range(len(self.game.goals)))

    def _update_milestones(self) -> float:
        """Mark milestones that became true; the number of new ones is the reward."""
        new = 0
        for m, (kind, x) in enumerate(self._milestones):
            if self.achieved[m]:
                continue
            if kind == "hold":
                hit = self.item_loc[x] == INVENTORY
            elif kind == "goal":
                hit = self.goal_holds(x)
            else:
                hit = self.state[x] != LOCKED
            if hit:
                self.achieved[m] = True
                new += 1
        return float(new)

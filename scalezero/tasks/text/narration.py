"""Sentences from states and events: what the player reads after every command.

An observation is, in this order: the feedback of the last command (or the intro with the
task at the start), the room description (room, exits, doors and their states, items on the
floor, containers and what open ones hold), the inventory and the score line. Everything is
filled from :data:`scalezero.tasks.text.lexicon.SENTENCES` in a fixed order (map and item
index order), so the text is a deterministic function of the state and the last events.
"""

from __future__ import annotations

from scalezero.tasks.text import lexicon
from scalezero.tasks.text.world import INVENTORY, OPEN, STATE_NAMES, Event, Game, World, inside

_ARTICLE_FIELDS = ("item", "container", "target", "key", "door", "thing")


def with_the(name: str) -> str:
    """``"the <name>"``."""
    return f"the {name}"


def with_a(name: str) -> str:
    """``"a <name>"``, or ``"an <name>"`` before a vowel."""
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def join(parts: list[str], last: str = "and") -> str:
    """``"x"``, ``"x and y"``, ``"x, y and z"`` (``last`` is the final joiner)."""
    if len(parts) <= 1:
        return "".join(parts)
    return f"{', '.join(parts[:-1])} {last} {parts[-1]}"


def sentence(template: str, /, **fields: str) -> str:
    """Fill template ``template`` of :data:`lexicon.SENTENCES` and capitalise its first letter.
    ``the_<f>``/``a_<f>`` fields are derived from the plain names ``<f>`` given."""
    for f in _ARTICLE_FIELDS:
        if f in fields:
            fields.setdefault(f"the_{f}", with_the(fields[f]))
            fields.setdefault(f"a_{f}", with_a(fields[f]))
    text = lexicon.SENTENCES[template].format(**fields)
    return text[:1].upper() + text[1:]


def event_sentences(events: list[Event]) -> list[str]:
    """The feedback sentences of a command's events."""
    return [sentence(key, **names) for key, names in events]


def task_text(game: Game) -> str:
    """The quest as one phrase: "put the red apple in the wooden chest and drop ..."."""
    phrases = []
    for goal in game.goals:
        item = game.items[goal.item].name
        if goal.room is not None:
            phrases.append(lexicon.SENTENCES["goal_room"].format(the_item=with_the(item), room=game.rooms[goal.room]))
        else:
            container = with_the(game.openables[goal.container].name)
            phrases.append(lexicon.SENTENCES["goal_container"].format(the_item=with_the(item), the_container=container))
    return join(phrases)


def intro_sentences(game: Game) -> list[str]:
    """What the player reads at the start, before the first description."""
    return [sentence("intro", task=task_text(game))]


def room_sentences(world: World) -> list[str]:
    """The description of the player's room in its current state."""
    g, here = world.game, world.player
    out = [sentence("room", room=g.rooms[here])]
    exits = g.exits[here]
    out.append(sentence("exits", directions=join([e.direction for e in exits], "or")) if exits else sentence("no_exits"))
    for e in exits:
        if e.door is not None:
            out.append(
                sentence("door", door=g.openables[e.door].name, direction=e.direction, state=STATE_NAMES[world.state[e.door]])
            )
    floor = [with_a(g.items[i].name) for i, loc in enumerate(world.item_loc) if loc == here]
    if floor:
        out.append(sentence("floor", items=join(floor)))
    for c, op in enumerate(g.openables):
        if op.kind != "container" or here not in op.rooms:
            continue
        if world.state[c] != OPEN:
            out.append(sentence("container_shut", container=op.name, state=STATE_NAMES[world.state[c]]))
            continue
        code = inside(c)
        held = [with_a(g.items[i].name) for i, loc in enumerate(world.item_loc) if loc == code]
        out.append(
            sentence("container_holds", container=op.name, items=join(held))
            if held
            else sentence("container_empty", container=op.name)
        )
    return out


def inventory_sentence(world: World) -> str:
    """What the player carries."""
    carried = [with_a(world.game.items[i].name) for i, loc in enumerate(world.item_loc) if loc == INVENTORY]
    return sentence("carry", items=join(carried)) if carried else sentence("carry_nothing")


def score_sentence(world: World) -> str:
    """``"Score: s of m."``: milestones reached (+1 once won) out of the maximal return."""
    return sentence("score", score=str(world.score), max_score=str(int(world.game.max_return)))


def observation_sentences(world: World, feedback: list[str]) -> list[str]:
    """Feedback, room description, inventory and score: one observation's sentences."""
    return [*feedback, *room_sentences(world), inventory_sentence(world), score_sentence(world)]

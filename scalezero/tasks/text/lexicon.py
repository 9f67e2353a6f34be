"""Every word the text games can ever say: entity-name pools and sentence templates.

The generator draws names only from the pools below, and the narration and the command list
build every string only from the templates below. The tokenizer's vocabulary is derived from
this module alone, so it is the same on every machine and a word outside it can only appear
through a bug (a test plays many generated games and checks that no unknown word shows up).

Templates are ``str.format`` strings; their fields are filled with names from the pools,
directions, numbers (``0..MAX_NUMBER``) or other filled templates.
"""

from __future__ import annotations

#: Compass directions, in the order commands list them.
DIRECTIONS: tuple[str, ...] = ("north", "south", "east", "west")
#: Grid offset of each direction (x grows east, y grows north).
DIRECTION_OFFSETS: dict[str, tuple[int, int]] = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}
OPPOSITE: dict[str, str] = {"north": "south", "south": "north", "east": "west", "west": "east"}

ROOM_NAMES: tuple[str, ...] = (
    "kitchen", "hallway", "cellar", "library", "garden", "attic", "pantry", "study", "bedroom", "workshop",
    "gallery", "bathroom", "porch", "shed", "vault", "chapel", "office", "garage", "nursery", "laundry",
)  # fmt: skip

#: Portable items are "<adjective> <noun>" with a distinct noun per game.
ITEM_ADJECTIVES: tuple[str, ...] = ("red", "blue", "green", "yellow", "old", "small", "shiny", "dusty", "tiny", "heavy")
ITEM_NOUNS: tuple[str, ...] = (
    "apple", "book", "candle", "coin", "cup", "feather", "flute", "gem", "hat", "lamp",
    "map", "mug", "pearl", "ring", "scroll", "shell", "sock", "spoon", "stone", "whistle",
)  # fmt: skip
#: Keys are "<material> key", a distinct material per key.
KEY_MATERIALS: tuple[str, ...] = ("brass", "iron", "copper", "silver", "golden", "bone")
#: Containers are "<adjective> <noun>" with a distinct noun per game; they cannot be carried.
CONTAINER_ADJECTIVES: tuple[str, ...] = ("wooden", "metal", "wicker", "oak", "glass", "tin")
CONTAINER_NOUNS: tuple[str, ...] = ("chest", "box", "crate", "basket", "cabinet", "trunk", "cupboard", "case")
#: Doors are "<material> door", a distinct material per door.
DOOR_MATERIALS: tuple[str, ...] = ("pine", "stone", "steel", "painted", "barred", "arched")

#: How entity names are built from the pools above.
NAMES: dict[str, str] = {
    "item": "{adjective} {noun}",
    "key": "{material} key",
    "container": "{adjective} {noun}",
    "door": "{material} door",
}

#: Largest number a sentence may contain (the score line); larger games raise it here.
MAX_NUMBER = 40

#: Commands, one template per verb (the game's command list fills them in).
COMMANDS: dict[str, str] = {
    "look": "look",
    "inventory": "inventory",
    "go": "go {direction}",
    "take": "take {item}",
    "drop": "drop {item}",
    "put": "put {item} in {container}",
    "open": "open {target}",
    "close": "close {target}",
    "unlock": "unlock {target} with {key}",
    "lock": "lock {target} with {key}",
}

#: Narration: feedback of commands, room and inventory descriptions, the score line.
#: ``{the_x}`` fields receive "the <name>", ``{a_x}`` fields "a/an <name>".
SENTENCES: dict[str, str] = {
    # episode start and the two commands that change nothing
    "intro": "A new game begins. Your task: {task}.",
    "look": "You look around.",
    "inventory": "You check what you carry.",
    # quest phrases joined into the task sentence
    "goal_room": "drop {the_item} in the {room}",
    "goal_container": "put {the_item} in {the_container}",
    # successful commands
    "go": "You go {direction}.",
    "take": "You take {the_item}.",
    "take_from": "You take {the_item} from {the_container}.",
    "drop": "You drop {the_item}.",
    "put": "You put {the_item} in {the_container}.",
    "open": "You open {the_target}.",
    "close": "You close {the_target}.",
    "unlock": "You unlock {the_target} with {the_key}.",
    "lock": "You lock {the_target} with {the_key}.",
    "milestone": "Your score goes up.",
    "won": "You have completed your task!",
    # commands that are not possible now (the state does not change)
    "no_exit": "You can't go {direction} from here.",
    "door_blocks": "{the_door} is {state}.",
    "already_carried": "You already carry {the_item}.",
    "not_here": "You don't see {the_thing} here.",
    "not_carried": "You don't carry {the_item}.",
    "is_closed": "{the_target} is closed.",
    "is_locked": "{the_target} is locked.",
    "already_open": "{the_target} is already open.",
    "already_closed": "{the_target} is already closed.",
    "not_locked": "{the_target} is not locked.",
    "already_locked": "{the_target} is already locked.",
    "close_first": "You must close {the_target} first.",
    "nothing_happens": "Nothing happens.",
    # room description
    "room": "You are in the {room}.",
    "exits": "You can go {directions}.",
    "no_exits": "There is no way out.",
    "door": "{the_door} to the {direction} is {state}.",
    "floor": "You see {items}.",
    "container_shut": "There is {a_container} here, which is {state}.",
    "container_empty": "There is {a_container} here, which is open and empty.",
    "container_holds": "There is {a_container} here, which is open and holds {items}.",
    # inventory and score
    "carry": "You carry {items}.",
    "carry_nothing": "You carry nothing.",
    "score": "Score: {score} of {max_score}.",
}

#: Words that fill fields but come from no pool: openable states, articles, list joiners.
FILLER_WORDS: tuple[str, ...] = ("open", "closed", "locked", "a", "an", "the", "and", "or", ",")

"""Docker-style random names: ``adjective_surname``."""

from __future__ import annotations

import secrets

_LEFT = (
    "admiring", "agitated", "amazing", "awesome", "blissful", "bold", "brave", "busy",
    "charming", "clever", "compassionate", "confident", "cool", "dazzling", "determined",
    "eager", "ecstatic", "elastic", "elegant", "epic", "festive", "focused", "friendly",
    "funny", "gallant", "gifted", "gracious", "happy", "hopeful", "jolly", "keen", "kind",
    "laughing", "loving", "lucid", "magical", "modest", "nifty", "nostalgic", "objective",
    "optimistic", "peaceful", "pensive", "practical", "priceless", "quirky", "relaxed",
    "serene", "sharp", "silly", "sleepy", "stoic", "strange", "sweet", "tender", "thirsty",
    "trusting", "upbeat", "vibrant", "vigilant", "wizardly", "wonderful", "youthful", "zen",
)
_RIGHT = (
    "albattani", "allen", "archimedes", "babbage", "banach", "bardeen", "bell", "bhabha",
    "bohr", "booth", "brahmagupta", "cannon", "carson", "cerf", "curie", "darwin", "dijkstra",
    "einstein", "euclid", "euler", "fermat", "feynman", "franklin", "galileo", "gauss",
    "goldberg", "hamilton", "hawking", "hopper", "hypatia", "jennings", "johnson", "kepler",
    "knuth", "lamarr", "leakey", "lovelace", "mccarthy", "meitner", "mendel", "morse",
    "newton", "noether", "pascal", "pike", "poincare", "ritchie", "shannon", "sinoussi",
    "stallman", "swartz", "tesla", "thompson", "torvalds", "turing", "wilson", "wozniak",
)


def random_name(retry: int = 0) -> str:
    name = f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"
    return f"{name}{secrets.randbelow(10)}" if retry else name

"""How much of a message a preview reads and how long it may take: a hostile mail (a
million parts, deep nesting, a zip bomb) costs a bounded amount of work, never a hung worker."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 2_000_000  # a larger message shows its headers only
    seconds: float = 2.0  # parse and sanitise, together
    max_parts: int = 500
    max_depth: int = 16
    text_chars: int = 200_000  # of the text body shown
    html_chars: int = 1_000_000  # of the HTML handed to the sanitiser
    html_depth: int = 128  # elements nested deeper lose their tags (balance.py)
    max_links: int = 200
    max_attachments: int = 100
    header_chars: int = 2_000  # of one header's value, before it is parsed


class TooSlow(Exception):
    """The preview's time ran out: the message is shown as "could not display"."""


class TooComplex(Exception):
    """Too many parts, or nested too deep, to show."""


class Deadline:
    """A point in time that parsing steps check between bounded units of work."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.ends:
            raise TooSlow

"""What a sound file may be called: a plain name, never a path."""

from __future__ import annotations

import re

NAME_SHAPE = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)


def valid_name(name: str) -> bool:
    # The shape alone would let "." and ".." through.
    return bool(NAME_SHAPE.fullmatch(name)) and name not in (".", "..")

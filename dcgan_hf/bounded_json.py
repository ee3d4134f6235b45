"""JSON from outside, parsed only once it is known to be small enough to parse.

``json.loads`` recurses once per nesting level (100k levels: RecursionError) and builds a
Python object per value (``[{},{},…]`` costs ~24 bytes of memory per byte of text: a 60 MB
file, 1.4 GB). So before parsing, a vectorised scan of the text (strings blanked out, then
brackets and separators counted with numpy) bounds three things: bytes, nesting depth, and
the number of values, which bounds the memory the parse can take (~100 bytes a value at most).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string, escapes included
BYTES_PER_VALUE = 100  # the most one parsed value takes (an empty dict: 64 bytes, plus its slot)


class JSONLimitError(ValueError):
    """JSON refused before parsing; the message says which bound it exceeds."""


@dataclass(frozen=True)
class JSONLimits:
    """What a JSON document may measure before it is parsed."""

    max_bytes: int
    max_depth: int
    max_values: int

    @property
    def max_memory(self) -> int:
        """An upper bound on what parsing a document within these limits allocates."""
        return self.max_values * BYTES_PER_VALUE + self.max_bytes


def shape_of(raw: bytes) -> tuple[int, int]:
    """(deepest nesting, number of values and keys) of a JSON text, counted without parsing it."""
    blanked = np.frombuffer(STRING.sub(b'""', raw), dtype=np.uint8)
    tokens = blanked[~np.isin(blanked, np.frombuffer(b" \t\r\n", dtype=np.uint8))]
    opens = (tokens == ord("[")) | (tokens == ord("{"))
    closes = (tokens == ord("]")) | (tokens == ord("}"))
    depth = int(np.cumsum(opens.astype(np.int32) - closes.astype(np.int32)).max(initial=0))
    empty = int(np.count_nonzero(opens[:-1] & closes[1:]))  # "[]" and "{}" hold nothing
    # the first value, then one more after each comma or colon and in each non-empty container
    values = 1 + int(np.count_nonzero((tokens == ord(",")) | (tokens == ord(":")))) \
        + int(np.count_nonzero(opens)) - empty
    return depth, values


def loads(raw: bytes, limits: JSONLimits, *, strict: bool = True) -> Any:
    """Parse ``raw`` (UTF-8 JSON) within ``limits``; JSONLimitError before parsing when it is not.

    ``strict``: duplicate keys, ``NaN``/``Infinity`` and floats out of range are refused rather than
    silently resolved (a config); without it they pass as Python does (a log of losses may hold NaN).
    Other malformed JSON raises ``ValueError`` (``json.JSONDecodeError``, ``UnicodeDecodeError``).
    """
    if len(raw) > limits.max_bytes:
        raise JSONLimitError(f"larger than {limits.max_bytes:,} bytes")
    depth, values = shape_of(raw)
    if depth > limits.max_depth:
        raise JSONLimitError(f"nested {depth} levels deep (at most {limits.max_depth})")
    if values > limits.max_values:
        raise JSONLimitError(f"{values:,} values and keys (at most {limits.max_values:,})")
    text = raw.decode("utf-8")
    if not strict:
        return json.loads(text)
    return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_float=_finite_float)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    repeated = sorted(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
    if repeated:
        raise ValueError(f"duplicate keys {repeated}")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value

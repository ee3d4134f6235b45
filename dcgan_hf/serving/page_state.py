"""The demo page's state as URL query parameters, so a link reproduces what it showed.

``?tab=interpolate&a=3&b=42&frames=36`` opens the Interpolate tab on that walk; keys left
out take the defaults. A link is outside input: each value goes through the same checks
as the form, a bad one falls back to its default with a note, and the whole query is
bounded before anything is parsed. The page writes the query back (``history.replaceState``)
after each result, with only the keys that differ from the defaults, so links stay short.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

TABS = ("generate", "interpolate", "project", "training", "edit", "arithmetic", "complete")
MAX_VALUE_CHARS = 1200  # a brushed mask is 686 characters, a latent token ~270; an expression of a few tokens fits
MAX_KEYS = 32

# query key → PageState field; short keys keep links short
KEYS = {
    "tab": "tab",
    "seed": "seed",
    "n": "count",
    "t": "truncation",
    "a": "seed_a",
    "b": "seed_b",
    "more": "more_seeds",
    "frames": "frames",
    "path": "method",
    "loop": "closed",
    "wt": "walk_truncation",
    "za": "start_latent",
    "zb": "end_latent",
    "epoch": "epoch",
    "tseeds": "training_seeds",
    "gseed": "gif_seed",
    "es": "edit_seed",
    "et": "edit_truncation",
    "ez": "edit_latent",
    "edit": "edit",
    "sweep": "sweep_direction",
    "ga": "group_a",
    "gb": "group_b",
    "gc": "group_c",
    "noise": "noise_seed",
    "cs": "complete_seed",
    "cz": "complete_latent",
    "mask": "mask",
}


@dataclass(frozen=True)
class PageState:
    """Every input the page's results depend on (defaults: what a bare link shows)."""

    tab: str = "generate"
    seed: int = 42
    count: int = 16
    truncation: float = 1.0
    seed_a: int = 1
    seed_b: int = 2
    more_seeds: str = ""
    frames: int = 24
    method: str = "slerp"
    closed: bool = False
    walk_truncation: float = 1.0
    start_latent: str = ""
    end_latent: str = ""
    epoch: int = 0  # 0: the newest epoch
    training_seeds: str = "0-15"
    gif_seed: int = 0
    edit_seed: int = 42
    edit_truncation: float = 1.0
    edit_latent: str = ""  # a latent token: replaces the edit's seed
    edit: str = ""  # "0=2.5,3=-1": amounts along the model's directions
    sweep_direction: int = 0
    group_a: str = "0, 27, 47"  # face arithmetic, A - B + C: smiling women - neutral women + neutral men
    group_b: str = "1, 15, 49"  # (seeds of the bundled model, picked from its gallery; RESULTS §13)
    group_c: str = "21, 25, 34"
    noise_seed: int = 0
    complete_seed: int = 42
    complete_latent: str = ""
    mask: str = "right"  # a preset, or a brushed mask ("m1." + 683 characters)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


TRAINING_FIELDS = ("epoch", "training_seeds", "gif_seed")  # only on a page with a Training tab


def state_fields(training: bool = True) -> list[str]:
    """The fields a page's URL carries, in PageState's order (the page lists its components in it):
    every field but the tab, and the Training tab's only where there is one."""
    return [field.name for field in fields(PageState)
            if field.name != "tab" and (training or field.name not in TRAINING_FIELDS)]


def query_defaults() -> dict[str, Any]:
    """query key → default value, for the page's script that writes the URL."""
    defaults = PageState()
    return {key: getattr(defaults, name) for key, name in KEYS.items()}


def _whole(text: str) -> int:
    if not text.isdigit() or len(text) > 12:
        raise ValueError("not a whole number")
    return int(text)


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("not true/false")


_CONVERTERS = {int: _whole, float: float, bool: _flag, str: str}  # "inf"/"nan" floats fail `check`


def parse_query(query: Mapping[str, str], check: Mapping[str, Any] | None = None) -> tuple[PageState, list[str]]:
    """The page state a link asks for, and a note for each value that was ignored.

    ``check`` maps field names to validators (the form's own) that raise ValueError; a
    value that fails one keeps its default.
    """
    defaults = PageState()
    types = {spec.name: type(getattr(defaults, spec.name)) for spec in fields(PageState)}
    values: dict[str, Any] = {}
    notes: list[str] = []
    items = list(query.items())
    if len(items) > MAX_KEYS:
        return defaults, [f"the link has {len(items)} parameters (at most {MAX_KEYS}); showing the defaults"]
    for key, raw in items:
        name = KEYS.get(key)
        if name is None:
            continue  # Gradio's own (?__theme=dark, ?view=api) and anything unknown
        if not isinstance(raw, str) or len(raw) > MAX_VALUE_CHARS:
            notes.append(f"ignored ?{key}=…: longer than {MAX_VALUE_CHARS} characters")
            continue
        try:
            value = _CONVERTERS[types[name]](raw.strip())
            if name == "tab" and value not in TABS:
                raise ValueError(f"one of {', '.join(TABS)}")
            if check and name in check:
                value = check[name](value)
        except (ValueError, OverflowError) as error:
            notes.append(f"ignored ?{key}={raw[:40]!r}: {error}")
            continue
        values[name] = value
    return PageState(**{**defaults.as_dict(), **values}), notes

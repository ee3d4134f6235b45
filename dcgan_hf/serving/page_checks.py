"""The checks a link's values go through: the form's own validators, field by field.

A link (``?seed=7&tseeds=0-15``) is outside input. :func:`dcgan_hf.serving.page_state.parse_query`
reads it with the dictionary :func:`query_checks` builds, so a value the form would refuse
is refused in a link with the form's own message (tests/test_page_state.py uses this very
dictionary, not a copy).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..arithmetic import split_expression
from ..completion import parse_mask
from ..directions import Directions
from .requests import (
    MAX_FRAMES,
    MAX_IMAGES,
    METHODS,
    MIN_FRAMES,
    InterpolateRequest,
    check_seed_input,
    check_truncation,
    check_whole_number,
    parse_latent_input,
    parse_seed_list,
)
from .steering import MAX_NOISE_SEED, ArithmeticRequest, EditRequest

Check = Callable[[Any], Any]


def _refuse(message: str) -> Any:
    raise ValueError(message)


def query_checks(*, nz: int, directions: Directions, epochs: Sequence[int] | None) -> dict[str, Check]:
    """Field → validator for every PageState field a link may set (``epochs``: the run's, or None)."""
    return {
        "seed": check_seed_input, "seed_a": check_seed_input, "seed_b": check_seed_input,
        "gif_seed": check_seed_input,
        "count": lambda value: check_whole_number(value, "n", 1, MAX_IMAGES),
        "frames": lambda value: check_whole_number(value, "frames", MIN_FRAMES, MAX_FRAMES),
        "truncation": check_truncation, "walk_truncation": check_truncation,
        "method": lambda value: value if value in METHODS else _refuse(f"one of {', '.join(METHODS)}"),
        "more_seeds": lambda value: (InterpolateRequest.parse(0, 0, value), value)[1],
        "start_latent": lambda value: parse_latent_input(value, nz, "za") or "",
        "end_latent": lambda value: parse_latent_input(value, nz, "zb") or "",
        "training_seeds": lambda value: (parse_seed_list(value, "tseeds"), value)[1],
        "epoch": lambda value: value if epochs is None or value == 0 or value in epochs
        else _refuse(f"this run has epochs {', '.join(map(str, epochs))}"),
        **steering_checks(directions, nz),
    }


def steering_checks(directions: Directions, nz: int) -> dict[str, Check]:
    """The Edit, Arithmetic and Complete tabs' validators, applied to a link's values."""

    def group(text: str) -> str:
        if len(split_expression(text)) != 1:
            raise ValueError("one group of seeds, without + or -")
        ArithmeticRequest.parse(text, nz=nz)
        return text

    return {
        "edit_seed": check_seed_input, "complete_seed": check_seed_input, "edit_truncation": check_truncation,
        "edit_latent": lambda value: parse_latent_input(value, nz, "ez") or "",
        "complete_latent": lambda value: parse_latent_input(value, nz, "cz") or "",
        "edit": lambda value: EditRequest.parse(0, 1.0, "", value, directions=directions, nz=nz).edit_text,
        "sweep_direction": directions.index, "group_a": group, "group_b": group, "group_c": group,
        "noise_seed": lambda value: check_whole_number(value, "noise", 0, MAX_NOISE_SEED),
        "mask": lambda value: (parse_mask(value), value.strip())[1],
    }

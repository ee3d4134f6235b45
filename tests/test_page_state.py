"""Page state in the URL: a link is outside input, read with the form's own checks.

In-process: the query parser and the validators app.py hands it (the browser test opens
real links). A bad value keeps its default and says why; nothing unbounded is parsed.
"""

from __future__ import annotations

import pytest
import torch

from dcgan_hf import Directions, latent_token
from dcgan_hf.serving.page_checks import query_checks
from dcgan_hf.serving.page_state import KEYS, MAX_KEYS, MAX_VALUE_CHARS, PageState, parse_query, query_defaults

# the app's own checks (Demo.query_checks hands parse_query this dictionary), for a model with nz=100,
# two named directions and a training run with epochs 1-3
CHECKS = query_checks(nz=100, directions=Directions(torch.eye(100)[:2], names=("smile", "age")), epochs=[1, 2, 3])


def test_a_bare_link_is_the_defaults() -> None:
    assert parse_query({}) == (PageState(), [])
    assert parse_query({"__theme": "dark", "view": "api"}) == (PageState(), [])  # Gradio's own keys pass by
    assert set(query_defaults()) == set(KEYS) and query_defaults()["n"] == 16


def test_a_link_sets_every_field() -> None:
    token = latent_token.encode(torch.linspace(-2, 2, 100))
    query = {"tab": "interpolate", "seed": "7", "n": "4", "t": "0.7", "a": "3", "b": "9", "more": "11, 12",
             "frames": "36", "path": "lerp", "loop": "1", "wt": "0.8", "za": token, "epoch": "2",
             "tseeds": "0-3", "gseed": "5"}
    state, notes = parse_query(query, CHECKS)
    assert notes == []
    assert state == PageState(tab="interpolate", seed=7, count=4, truncation=0.7, seed_a=3, seed_b=9,
                              more_seeds="11, 12", frames=36, method="lerp", closed=True, walk_truncation=0.8,
                              start_latent=token, epoch=2, training_seeds="0-3", gif_seed=5)


@pytest.mark.parametrize(
    ("query", "note"),
    [
        ({"seed": "banana"}, "?seed='banana': not a whole number"),
        ({"seed": "99999999999"}, "seed must be a whole number from 0 to 4294967295"),
        ({"seed": "-3"}, "not a whole number"),
        ({"t": "nan"}, "truncation must be a number"),
        ({"t": "1e400"}, "truncation must be a number"),  # float('1e400') is inf
        ({"t": "9"}, "truncation must be in (0, 4]"),
        ({"loop": "maybe"}, "not true/false"),
        ({"tab": "admin"}, "one of generate, interpolate, project, training"),
        ({"za": "z1.broken!"}, "za is damaged"),
        ({"za": latent_token.encode(torch.zeros(16))}, "nz=100"),
        ({"tseeds": "0-4294967295"}, "at most 64 seeds"),
        ({"tseeds": "1 x"}, "tseeds must be whole numbers and ranges"),
        ({"more": "0-20"}, "more seeds: at most 14 seeds"),
        ({"path": "cubic"}, "one of slerp, lerp"),
        ({"epoch": "7"}, "this run has epochs 1, 2, 3"),
        ({"edit": "grin=2"}, "grin"),
        ({"sweep": "9"}, "9"),
        ({"ga": "1 - 2"}, "one group of seeds, without + or -"),
        ({"noise": "-1"}, "not a whole number"),
        ({"mask": "chin"}, "unknown mask 'chin'"),
        ({"a": "1" * (MAX_VALUE_CHARS + 1)}, f"longer than {MAX_VALUE_CHARS} characters"),
    ],
)
def test_bad_values_keep_their_defaults_and_say_why(query: dict[str, str], note: str) -> None:
    state, notes = parse_query({**query, "n": "4"}, CHECKS)
    assert state == PageState(count=4)  # the good value still applies
    assert len(notes) == 1 and note in notes[0], notes


def test_too_many_parameters_are_not_parsed() -> None:
    query = {f"x{index}": "1" for index in range(MAX_KEYS + 1)}
    state, notes = parse_query({**query, "seed": "5"})
    assert state == PageState() and "at most 32" in notes[0]

"""--precision / --channels-last: what each setting resolves to, and that a resumed run keeps its choice."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dcgan_hf.layout import CheckpointLayout
from dcgan_hf.training import TrainConfig, train
from dcgan_hf.training.loop import ARITHMETIC_KEY
from dcgan_hf.training.precision import MIN_GAIN, Arithmetic, choose, time_steps

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
FP32, BF16, BF16_NHWC = Arithmetic(False, False), Arithmetic(True, False), Arithmetic(True, True)


def timings(**seconds: float):
    """A timing table for choose(): candidate label → seconds per step, and a record of what was asked."""
    asked: list[list[Arithmetic]] = []

    def time_candidates(candidates: list[Arithmetic]) -> dict[Arithmetic, float]:
        asked.append(candidates)
        return {c: seconds[c.label.replace(" autocast", "").replace(" + ", "_")] for c in candidates}

    return time_candidates, asked


def test_explicit_precision_is_never_timed_and_keeps_the_layout_flag():
    never, asked = timings()
    assert choose("fp32", None, CPU, time_candidates=never).arithmetic == FP32
    assert choose("bf16", None, CPU, time_candidates=never).arithmetic == BF16
    assert choose("bf16", True, CPU, time_candidates=never).arithmetic == BF16_NHWC
    assert choose("fp32", None, CUDA, time_candidates=never).arithmetic == Arithmetic(False, True)
    assert asked == []


def test_auto_on_cuda_is_bf16_with_channels_last_unless_told_otherwise():
    assert choose("auto", None, CUDA).arithmetic == BF16_NHWC
    assert choose("auto", False, CUDA).arithmetic == BF16


def test_auto_on_a_cpu_without_native_bf16_is_fp32_without_timing():
    never, asked = timings()
    choice = choose("auto", None, CPU, time_candidates=never, native_bf16=False)
    assert choice.arithmetic == FP32 and "no native bf16" in choice.reason and asked == []


@pytest.mark.parametrize("fp32, bf16, bf16_nhwc, expected", [
    (1.0, 0.5, 0.6, BF16),  # bf16 2× faster: bf16
    (1.0, 0.6, 0.4, BF16_NHWC),  # NHWC faster still: both
    (1.0, 1.0 / (MIN_GAIN - 0.05), 2.0, FP32),  # a gain below MIN_GAIN changes no numerics
    (1.0, 1.5, 1.2, FP32),  # emulated bf16: slower
])
def test_auto_on_a_cpu_with_native_bf16_keeps_the_clearly_fastest(fp32, bf16, bf16_nhwc, expected):
    table, asked = timings(fp32=fp32, bf16=bf16, bf16_channels_last=bf16_nhwc)
    choice = choose("auto", None, CPU, time_candidates=table, native_bf16=True)
    assert choice.arithmetic == expected
    assert asked == [[FP32, BF16, BF16_NHWC]]
    assert "timed per step" in choice.reason


def test_an_explicit_layout_limits_what_auto_times():
    table, asked = timings(fp32_channels_last=1.0, bf16_channels_last=0.5)
    assert choose("auto", True, CPU, time_candidates=table, native_bf16=True).arithmetic == BF16_NHWC
    assert asked == [[Arithmetic(False, True), BF16_NHWC]]


def test_a_resumed_run_keeps_what_it_recorded_unless_the_layout_flag_says_otherwise():
    never, asked = timings()
    assert choose("auto", None, CPU, recorded=BF16, time_candidates=never, native_bf16=True).arithmetic == BF16
    assert asked == []
    table, asked = timings(fp32_channels_last=1.0, bf16_channels_last=2.0)
    assert choose("auto", True, CPU, recorded=BF16, time_candidates=table, native_bf16=True).arithmetic \
        == Arithmetic(False, True)


@pytest.mark.parametrize("recorded", [None, {}, {"precision": "fp16", "channels_last": False},
                                      {"precision": "bf16"}, {"precision": "bf16", "channels_last": "yes"}, [1]])
def test_unusable_records_mean_nothing_was_recorded(recorded):
    assert Arithmetic.from_dict(recorded) is None


def test_time_steps_runs_every_candidate_and_keeps_its_best():
    calls: dict[str, int] = {}

    def make_step(arithmetic: Arithmetic):
        def step() -> None:
            calls[arithmetic.label] = calls.get(arithmetic.label, 0) + 1
        return step

    seconds = time_steps(make_step, [FP32, BF16], rounds=3)
    assert set(seconds) == {FP32, BF16} and all(math.isfinite(s) and s >= 0 for s in seconds.values())
    assert calls == {"fp32": 4, "bf16 autocast": 4}  # one warm-up, three timed


def test_the_checkpoint_records_the_arithmetic_and_a_resume_keeps_it(tmp_path):
    config = dict(synthetic=32, output_dir=str(tmp_path), batch_size=8, ngf=8, ndf=8, nz=16, threads=1,
                  progress=False, precision="bf16", channels_last=True)
    first = train(TrainConfig(epochs=1, **config))
    assert first.arithmetic == "bf16 autocast + channels_last"
    state = json.loads(CheckpointLayout(first.checkpoint).state.read_text())
    assert state["extra"][ARITHMETIC_KEY] == {"precision": "bf16", "channels_last": True}
    resumed = train(TrainConfig(epochs=2, **{**config, "precision": "auto", "channels_last": None},
                                resume="latest"))
    assert resumed.arithmetic == "bf16 autocast + channels_last" and resumed.progress.epoch == 2
    assert all(torch.isfinite(p).all() for p in resumed.generator.parameters())


def test_channels_last_flag_is_tristate_on_the_command_line():
    assert TrainConfig.from_args(["--dry-run"]).channels_last is None
    assert TrainConfig.from_args(["--dry-run", "--channels-last"]).channels_last is True
    assert TrainConfig.from_args(["--dry-run", "--no-channels-last"]).channels_last is False

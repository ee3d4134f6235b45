"""TrainConfig: the one place a training knob is defined.

Each field becomes a ``train.py`` flag (``lr_d`` → ``--lr-d``), is stored in every
checkpoint's ``state.json`` and printed in the model card, so the three never disagree.
``--recipe`` names a preset of the recipe fields (:data:`RECIPES`); flags given
explicitly still win over it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

from ..persistence import SIZE_LIMITS


MAX_RETRY_DELAY = 3600.0  # seconds; the pusher doubles it per attempt up to max(300, this)


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


AUGMENT_OPS = ("color", "translation", "cutout")

# Named presets of the recipe fields. "default" is the dataclass defaults; "classic" is
# pytorch/examples' dcgan/main.py (batch 64, Adam 2e-4 β=(0.5, 0.999), BCE with hard
# labels, 64-wide nets, no EMA, no flips, no augmentation, no regulariser).
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "classic": dict(batch_size=64, lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999, ngf=64, ndf=64, loss="bce",
                    label_smoothing=0.0, ema_decay=0.0, ema_start=0, hflip=False, augment="", r1_gamma=0.0),
}


# Fields whose default changed after checkpoints already existed without them: what a saved config
# that lacks the key trained with (R1 became the default after the recipe study).
ABSENT_FROM_OLDER_CHECKPOINTS: dict[str, Any] = {"r1_gamma": 0.0}


@dataclass
class TrainConfig:
    """Defaults are the DCGAN paper's recipe (Adam 2e-4, β=(0.5, 0.999), batch 128, BCE) plus what
    measurably helps on top of it: an EMA read-out (§5) and a lazy R1 penalty (§10 of bench/RESULTS.md)."""

    recipe: str = _opt("default", "named preset of the recipe flags (classic: pytorch/examples' dcgan); "
                       "flags given explicitly override it", choices=tuple(RECIPES))

    data: str = _opt("", "images: a folder (recursive), a .zip, a CelebA root, hf://datasets/OWNER/NAME[@rev], or a "
                         "`datasets` folder (save_to_disk, parquet files, imagefolder with metadata); the last two "
                         "need dcgan_hf[datasets]")
    split: str = _opt("train", "the split to train on: of a `datasets` dataset, or of a CelebA root (train/valid/test)")
    image_column: str = _opt("", "the image column of a `datasets` dataset (default: the one column of type Image)")
    synthetic: int = _opt(0, "train on this many synthetic images instead of --data (benchmarks, smoke tests)")
    output_dir: str = _opt("outputs/dcgan-celeba", "where checkpoints, samples, logs and the Hub folder go")
    epochs: int = _opt(25, "passes over the data")
    max_steps: int = _opt(0, "stop after this many steps in total (0: no limit)")
    batch_size: int = _opt(128, "images per step (per process under torchrun)")
    lr_g: float = _opt(2e-4, "generator Adam learning rate")
    lr_d: float = _opt(2e-4, "discriminator Adam learning rate")
    beta1: float = _opt(0.5, "Adam beta1")
    beta2: float = _opt(0.999, "Adam beta2")
    nz: int = _opt(100, "latent size")
    ngf: int = _opt(64, "generator width")
    ndf: int = _opt(64, "discriminator width")
    loss: str = _opt("bce", "GAN loss: bce (non-saturating, on logits) or hinge", choices=("bce", "hinge"))
    label_smoothing: float = _opt(
        0.0, "targets become 1-s for real and s for fake images in D's loss (0.1: the 0.9/0.1 trick; bce only)"
    )
    augment: str = _opt("", "DiffAugment policy applied to every image D sees, real and fake: a comma list of "
                        + ", ".join(AUGMENT_OPS) + " ('' = off)")
    r1_gamma: float = _opt(0.1, "R1 penalty weight on real images (gamma/2·‖∇D(x)‖²; 0: off). On by default: it "
                           "won the recipe study for both seeds, at equal images and equal time (bench/RESULTS.md §10)")
    r1_every: int = _opt(16, "apply R1 lazily every this many steps (scaled up to match)")
    ema_decay: float = _opt(0.999, "EMA of generator weights used for samples and publishing (0: off)")
    ema_start: int = _opt(0, "steps during which the EMA just copies the live generator before averaging")
    init_from: str = _opt("", "start from a published model (folder or user/repo[@rev]): its generator and "
                          "discriminator, fresh optimizers, a new run (fine-tuning, moving machines)")
    hflip: bool = _opt(False, "flip training images left-right at random")
    seed: int = _opt(0, "seed for weights, data order and noise")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N")
    precision: str = _opt("auto", "auto, fp32 or bf16 (autocast; weights and optimizer states stay fp32). auto: "
                          "bf16 on CUDA; on a CPU with native bf16 (AVX-512 BF16 / AMX) whichever of fp32 and bf16 "
                          "a short timing at start-up finds faster, else fp32; a resumed run keeps its choice",
                          choices=("auto", "fp32", "bf16"))
    cuda_graph: bool = _opt(True, "capture the whole D+G step as one CUDA graph (CUDA, single process)")
    channels_last: bool | None = _opt(None, "NHWC memory layout; unset: on CUDA, and on a CPU when --precision "
                                      "auto's start-up timing finds it faster")
    threads: int = _opt(0, "CPU intra-op threads (0: all cores, or cores/ranks under torchrun)")
    log_every: int = _opt(50, "steps between loss logs")
    checkpoint_every: int = _opt(1, "epochs between checkpoints (0: only at the end); a run killed without warning "
                                 "loses at most this many epochs (SIGINT/SIGTERM checkpoint at once)")
    keep_checkpoints: int = _opt(3, "how many recent checkpoints to keep (the best one, with --eval-every, is kept "
                                 "apart in best/ and never rotated away)")
    resume: str = _opt("", "'latest' (in output-dir), 'best' (the lowest-FID checkpoint in output-dir/best), a "
                       "checkpoint folder, or 'hub' (from --push-to-hub's repo)")
    allow_changes: bool = _opt(False, "resume even though the recipe or the training images differ from the "
                               "checkpoint's (without it such a resume lists the differences and stops)")
    max_bad_steps: int = _opt(20, "stop with an error after this many steps in a row whose losses or gradients "
                              "were not finite (each is skipped: weights, optimizers, EMA and BN statistics stay)")
    on_collapse: str = _opt("stop", "what the collapse watchdog does when an epoch looks collapsed (sample "
                            "diversity halved, or D saturated): stop (end cleanly, keeping the checkpoints "
                            "from before) or warn", choices=("stop", "warn"))
    epoch_history: bool = _opt(True, "save each epoch's EMA generator in float16 as history/epoch-NNNNNN.safetensors "
                               "(~2 MB at width 32; never rotated away)")
    push_to_hub: str = _opt("", "Hub repo id to publish to, e.g. user/dcgan-celeba")
    hub_private: bool = _opt(False, "create the Hub repo as private")
    hub_every: int = _opt(1, "epochs between Hub pushes (the last epoch is always pushed)")
    hub_retry_delay: float = _opt(5.0, "seconds before retrying a failed Hub push (doubling, 5 attempts)")
    eval_every: int = _opt(0, "epochs between FID/KID evaluations (0: off; needs dcgan_hf[eval])")
    eval_real: str = _opt("", "real images for FID/KID (folder or zip; use other identities than --data)")
    eval_num: int = _opt(2000, "generated images per evaluation")
    eval_train_num: int = _opt(5000, "training images (evenly spaced) the memorization check compares samples with; "
                               "their Inception features are computed once per dataset and cached (0: no check)")
    data_cache: str = _opt("", "folder for decoded-image caches (default ~/.cache/dcgan_hf/data)")
    workers: int = _opt(0, "processes decoding images the first time (0: all cores)")
    progress: bool = _opt(True, "show tqdm progress bars")
    dry_run: bool = _opt(False, "smoke test: 2 steps of 1 epoch (synthetic images if --data is empty)")

    def __post_init__(self) -> None:
        problems = []
        not_finite = [spec.name for spec in fields(self)
                      if spec.type in (float, "float") and not math.isfinite(getattr(self, spec.name))]
        problems += [f"--{_flag(name)} must be a finite number, got {getattr(self, name)}" for name in not_finite]
        for name in ("epochs", "batch_size", "log_every", "keep_checkpoints", "hub_every", "eval_num", "r1_every",
                     "max_bad_steps"):
            if getattr(self, name) < 1:
                problems.append(f"--{_flag(name)} must be ≥ 1")
        for name in ("nz", "ngf", "ndf"):  # the models' own bounds (dcgan_hf.models.SIZE_LIMITS)
            if not 1 <= getattr(self, name) <= SIZE_LIMITS[name]:
                problems.append(f"--{_flag(name)} must be in [1, {SIZE_LIMITS[name]}]")
        for name in ("synthetic", "max_steps", "checkpoint_every", "eval_every", "workers", "threads", "ema_start",
                     "eval_train_num"):
            if getattr(self, name) < 0:
                problems.append(f"--{_flag(name)} must be ≥ 0")
        for name in ("lr_g", "lr_d"):
            if name not in not_finite and not getattr(self, name) > 0:
                problems.append(f"--{_flag(name)} must be > 0")
        for name in ("beta1", "beta2"):
            if name not in not_finite and not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"--{name} must be in [0, 1)")
        if "hub_retry_delay" not in not_finite and not 0 <= self.hub_retry_delay <= MAX_RETRY_DELAY:
            problems.append(f"--hub-retry-delay must be in [0, {MAX_RETRY_DELAY:g}] seconds")
        if "label_smoothing" not in not_finite and not 0.0 <= self.label_smoothing < 0.5:
            problems.append("--label-smoothing must be in [0, 0.5)")
        if "ema_decay" not in not_finite and not 0.0 <= self.ema_decay < 1.0:
            problems.append("--ema-decay must be in [0, 1)")
        if self.recipe not in RECIPES:
            problems.append(f"--recipe must be one of {', '.join(RECIPES)}")
        if self.on_collapse not in ("stop", "warn"):
            problems.append("--on-collapse must be stop or warn")
        if self.loss not in ("bce", "hinge"):
            problems.append("--loss must be bce or hinge")
        if self.loss == "hinge" and self.label_smoothing:
            problems.append("--label-smoothing applies to --loss bce only")
        if "r1_gamma" not in not_finite and self.r1_gamma < 0:
            problems.append("--r1-gamma must be ≥ 0")
        for name in (n.strip() for n in self.augment.split(",") if n.strip()):
            if name not in AUGMENT_OPS:
                problems.append(f"--augment: unknown op {name!r} (choose from {', '.join(AUGMENT_OPS)})")
        if self.init_from and self.resume == "hub":
            problems.append("--init-from starts a new run; --resume hub continues an old one: give one")
        if self.eval_every and not self.eval_real:
            problems.append("--eval-every needs --eval-real")
        if self.resume == "hub" and not self.push_to_hub:
            problems.append("--resume hub needs --push-to-hub REPO to know where to resume from")
        if not self.data and not self.dry_run and not self.synthetic:
            problems.append("--data is required (or --synthetic N, or --dry-run)")
        if self.data and self.synthetic:
            problems.append("give --data or --synthetic, not both")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Rebuild from a checkpoint's saved config; unknown keys are an error, not ignored, and a
        missing key means what the checkpoint trained with (``ABSENT_FROM_OLDER_CHECKPOINTS``)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}")
        return cls(**{**ABSENT_FROM_OLDER_CHECKPOINTS, **values})

    @classmethod
    def from_recipe(cls, recipe: str = "default", **overrides: Any) -> "TrainConfig":
        """A config from a named preset, with ``overrides`` on top (what ``--recipe`` does)."""
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
        return cls(**{**RECIPES[recipe], **overrides, "recipe": recipe})

    @classmethod
    def parser(cls, description: str | None = None) -> argparse.ArgumentParser:
        """An argparse parser with one flag per field, defaults and help from the fields."""
        parser = argparse.ArgumentParser(
            description=description or cls.__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        for spec in fields(cls):
            options: dict[str, Any] = {"default": spec.default, "help": spec.metadata["help"], "dest": spec.name}
            if "choices" in spec.metadata:
                options["choices"] = spec.metadata["choices"]
            if spec.type in (bool, "bool", "bool | None"):
                options["action"] = argparse.BooleanOptionalAction
            else:
                options["type"] = {"int": int, "float": float, "str": str}.get(str(spec.type), spec.type)
            parser.add_argument(f"--{_flag(spec.name)}", **options)
        return parser

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> "TrainConfig":
        parser = cls.parser()
        recipe = parser.parse_known_args(argv)[0].recipe
        parser.set_defaults(**RECIPES[recipe])  # the preset fills in; explicit flags still win
        args = parser.parse_args(argv)
        try:
            return cls(**vars(args))
        except ValueError as error:  # one line, without the 20-line usage: the flags parsed, a value is wrong
            parser.exit(2, f"{parser.prog}: error: {error}\n")
            raise  # unreachable: parser.exit exits

    def changed_from_defaults(self) -> dict[str, Any]:
        """Only the knobs a user set beyond the recipe: the shortest faithful record of a command line."""
        preset = RECIPES.get(self.recipe, {})
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name == "recipe" and self.recipe != f.default
                or f.name != "recipe" and getattr(self, f.name) != preset.get(f.name, f.default)}

    def command_line(self, program: str = "python train.py") -> str:
        """The flags that reproduce this config, for the model card."""
        parts = [program]
        for name, value in self.changed_from_defaults().items():
            if isinstance(value, bool):
                parts.append(f"--{_flag(name)}" if value else f"--no-{_flag(name)}")
            else:
                parts.append(f"--{_flag(name)} {value}")
        return " ".join(parts)


def _flag(name: str) -> str:
    return name.replace("_", "-")

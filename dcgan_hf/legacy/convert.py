"""Turn a legacy DCGAN checkpoint into Hub model folders: ``python -m dcgan_hf convert SRC OUT_DIR``.

The folders are written beside OUT_DIR under a temporary name and renamed into place
only when complete, so a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from ..files import replace_folder
from ..layout import DISCRIMINATOR_DIR, MODEL_FILES, HubLayout
from .reader import LegacyCheckpoint, read_legacy

LAYOUT_HELP = """\
formats: the DCGAN tutorial's {"g_model_state_dict", "d_model_state_dict", "epoch"}
(with or without DataParallel's "module." prefix), pytorch/examples netG_epoch_N.pth /
netD_epoch_N.pth, HugGAN "model.N.*" state dicts, and bare state dicts of either network.
Sizes (nz, ngf, nc, ndf) are read from the tensor shapes. Files are loaded with
torch.load(weights_only=True): a file holding other Python objects is refused.

layout: OUT_DIR/ holds the generator (config.json, model.safetensors, README.md) and
OUT_DIR/discriminator/ the discriminator, when the checkpoint has one. Naming
netG_epoch_N.pth or netD_epoch_N.pth converts both when the other file of the pair
lies beside it. A checkpoint with only a discriminator fills only OUT_DIR/discriminator/,
so the layout never changes.

--overwrite replaces only a folder convert made: one holding nothing but these files
(and discriminator/ with the same); any other file in OUT_DIR makes convert refuse.
"""


def check_destination(out_dir: str | os.PathLike, *, overwrite: bool, sources: Sequence[Path] = ()) -> None:
    """Refuse a non-empty OUT_DIR unless ``overwrite``; even then, refuse one holding anything
    convert does not write (a project, a .git, the source checkpoint): it would be deleted."""
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir} is not empty; pass --overwrite (overwrite=True) to replace it")
        for source in sources:
            if out_dir.resolve() in Path(source).resolve().parents:
                raise ValueError(f"{out_dir} holds the checkpoint being converted ({source}); choose another OUT_DIR")
        foreign = _not_written_by_convert(out_dir)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise FileExistsError(
                f"{out_dir} holds files convert did not write ({shown}); --overwrite only replaces a "
                f"folder convert made, so choose a new or empty OUT_DIR"
            )


def _not_written_by_convert(out_dir: Path) -> list[str]:
    """Entries of ``out_dir`` other than convert's own files (``layout.MODEL_FILES``, also in ``discriminator/``)."""
    foreign = []
    for entry in sorted(out_dir.iterdir()):
        if entry.name == DISCRIMINATOR_DIR and entry.is_dir() and not entry.is_symlink():
            foreign += [f"{entry.name}/{inner.name}" for inner in sorted(entry.iterdir())
                        if inner.name not in MODEL_FILES or inner.is_symlink() or not inner.is_file()]
        elif entry.name not in MODEL_FILES or entry.is_symlink() or not entry.is_file():
            foreign.append(entry.name + ("/" if entry.is_dir() else ""))
    return foreign


def _card(checkpoint: LegacyCheckpoint, source: Path | None, repo_id: str | None, local_path: str) -> dict[str, Any]:
    return dict(
        repo_id=repo_id,
        local_path=local_path,
        training={
            "converted from": f"`{source.name if source else '?'}` ({checkpoint.format} checkpoint)",
            "epoch": checkpoint.epoch if checkpoint.epoch is not None else "not recorded",
        },
        data_notice=(
            "Converted from a legacy checkpoint with `python -m dcgan_hf convert`; its training "
            "data is not recorded here. CelebA, if used, is released for non-commercial research only."
        ),
    )


def write_hub_folders(
    checkpoint: LegacyCheckpoint, out_dir: str | os.PathLike, *, overwrite: bool = False, repo_id: str | None = None
) -> list[Path]:
    """Save the checkpoint's networks as Hub folders; returns the folders written.

    ``repo_id``: the Hub repo the folder will be pushed to, named in the cards' usage snippets
    (without it they load from the folder).
    """
    out_dir = Path(out_dir)
    sources = [path for path in (checkpoint.generator_file, checkpoint.discriminator_file) if path is not None]
    check_destination(out_dir, overwrite=overwrite, sources=sources)
    written: list[Path] = []
    with replace_folder(out_dir) as staging:
        if checkpoint.generator is not None:
            checkpoint.generator.save_pretrained(
                staging, model_card_kwargs=_card(checkpoint, checkpoint.generator_file, repo_id, out_dir.name)
            )
            written.append(out_dir)
        if checkpoint.discriminator is not None:
            checkpoint.discriminator.save_pretrained(
                HubLayout(staging).discriminator,
                model_card_kwargs=_card(checkpoint, checkpoint.discriminator_file, repo_id,
                                        f"{out_dir.name}/{DISCRIMINATOR_DIR}"),
            )
            written.append(HubLayout(out_dir).discriminator)
    return written


def convert(src: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
    """Convert the legacy checkpoint ``src`` into Hub folders under ``out_dir`` (see LAYOUT_HELP)."""
    check_destination(out_dir, overwrite=overwrite, sources=[Path(src)])
    return write_hub_folders(read_legacy(src), out_dir, overwrite=overwrite)


def describe(checkpoint: LegacyCheckpoint) -> str:
    """Human summary: format, epoch, and the inferred sizes of each network found."""
    epoch = f", epoch {checkpoint.epoch}" if checkpoint.epoch is not None else ""
    lines = [f"found a {checkpoint.format} checkpoint{epoch}"]
    for role, model, source in (
        ("generator", checkpoint.generator, checkpoint.generator_file),
        ("discriminator", checkpoint.discriminator, checkpoint.discriminator_file),
    ):
        if model is not None:
            sizes = " ".join(f"{key}={value}" for key, value in model.config.items())
            lines.append(f"  {role + ':':<15}{sizes}  (from {source})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dcgan_hf convert",
        description="Convert a legacy DCGAN checkpoint into Hub folders that from_pretrained loads.",
        epilog=LAYOUT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", type=Path, metavar="SRC", help="the legacy checkpoint file (.pt/.pth/.bin)")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="the model folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    parser.add_argument("--push-to-hub", metavar="REPO", default=None,
                        help="also upload OUT_DIR to this Hub model repo (created if missing); its card names REPO")
    parser.add_argument("--private", action="store_true", help="create the --push-to-hub repo as private")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..hub.client import ensure_repo, hub_api, publish_folder, transport_errors

    try:
        check_destination(args.out_dir, overwrite=args.overwrite, sources=[args.src])
        checkpoint = read_legacy(args.src)
        print(describe(checkpoint))
        repo_id = ensure_repo(args.push_to_hub, private=args.private or None) if args.push_to_hub else None
        written = write_hub_folders(checkpoint, args.out_dir, overwrite=args.overwrite, repo_id=repo_id)
        for folder in written:
            loader = "Discriminator" if folder == HubLayout(args.out_dir).discriminator else "Generator"
            print(f"wrote {folder}/  (load with {loader}.from_pretrained({str(folder)!r}))")
        if repo_id is not None:

            commit = publish_folder(hub_api(), repo_id, args.out_dir, message=f"Convert {args.src.name} with dcgan_hf")
            print(f"pushed {args.out_dir}/ to {repo_id} (commit {commit[:10]})")
    except (ValueError, OSError, *transport_errors()) as error:  # ModelLoadError is a ValueError, Hub errors OSErrors
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

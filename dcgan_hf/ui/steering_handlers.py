"""The Edit, Arithmetic and Complete tabs' handlers: API endpoints (also MCP tools) and the
page's own. Every value is checked by dcgan_hf.serving.steering.
"""

from __future__ import annotations

import re
import time
from typing import Any

import gradio as gr

from .. import images as imaging, latent_token
from ..arithmetic import figure as arithmetic_figure
from ..completion import parse_mask
from ..directions import check_amount, format_edit
from ..serving.outputs import OutputFolder, tile_name
from ..serving.requests import GenerateRequest, InterpolateRequest, check_whole_number
from ..serving.server import ModelServer
from ..serving.steering import (
    MAX_GROUP_SEEDS,
    ArithmeticRequest,
    CompletionRequest,
    EditRequest,
    FaceSource,
    SweepRequest,
    completion_summary,
)
from ..serving.uploads import UploadLedger, crop_tensor, read_photo

from .common import face_data_uri, gpu_durations, on_gpu


MAX_SLIDERS = 12  # directions with a slider on the page; the API takes every direction the model has
EDIT_FIELDS = ["edit_seed", "edit_truncation", "edit_latent", "edit", "sweep_direction"]
ARITHMETIC_FIELDS = ["group_a", "group_b", "group_c", "noise_seed"]
COMPLETE_FIELDS = ["complete_seed", "complete_latent", "mask"]
STEERING_FIELDS = EDIT_FIELDS + ARITHMETIC_FIELDS + COMPLETE_FIELDS
COMPLETE_SOURCES = ("seed", "latent token", "my photo")
ARITHMETIC_TILES = 24  # faces the Arithmetic tab's gallery shows at a time


class SteeringHandlers:
    """Edits along the model's directions, face arithmetic and completion: API endpoints (also MCP
    tools) and the page's handlers. Every value is checked by dcgan_hf.serving.steering."""

    def __init__(self, server: ModelServer, files: OutputFolder, uploads: UploadLedger) -> None:
        self.server, self.files, self.uploads = server, files, uploads
        self.nz = server.generator.nz
        self.directions = server.directions
        seconds = gpu_durations(server)
        self.render_edit = on_gpu(server.edit, seconds["edit"])
        self.render_sweep = on_gpu(server.sweep, seconds["edit"])
        self.render_arithmetic = on_gpu(server.arithmetic, seconds["edit"])
        self.render_completion = on_gpu(server.complete, seconds["complete"])
        self.walk_latent = on_gpu(server.walk_latent, seconds["edit"])
        self.render_grid = on_gpu(server.generate, seconds["generate"])

    @property
    def slider_count(self) -> int:
        return min(MAX_SLIDERS, self.directions.count)

    # -- the API ------------------------------------------------------------------------------------

    def edit(self, seed: float, truncation: float, latent: str, edit: str) -> tuple[str, str]:
        """Move a face along the model's latent directions (SeFa: found in its weights) and draw it.

        Args:
            seed: the face's seed (0 to 4294967295); ignored when latent is given.
            truncation: scale of the seed's latent, in (0, 4]; 1.0 = off.
            latent: optional latent token (starts "z1.") from /project, /arithmetic, /complete or an earlier /edit; replaces the seed.
            edit: amounts along directions, e.g. "0=2.5, 3=-1" or "smile=2" (index or name = amount in standard deviations of the model's latents, -6 to 6; ±3 spans nearly all faces; /model_info lists the directions).

        Returns:
            the edited face (64×64 PNG) and its latent token.
        """
        request = EditRequest.parse(seed, truncation, latent, edit, directions=self.directions, nz=self.nz)
        face, z = self.render_edit(request)
        return self.files.write(f"{request.stem}.png", face.png), latent_token.encode(z[0])

    def sweep(self, seed: float, truncation: float, latent: str, edit: str, direction: str,
              frames: float) -> tuple[str, str]:
        """One latent direction swept across a face, from -3 to +3 standard deviations.

        Args:
            seed: the face's seed (0 to 4294967295); ignored when latent is given.
            truncation: scale of the seed's latent, in (0, 4]; 1.0 = off.
            latent: optional latent token (starts "z1.") to start from instead of the seed.
            edit: other directions' amounts kept during the sweep, e.g. "1=2" (may be empty).
            direction: the direction to sweep: its index ("0") or name ("smile").
            frames: number of frames, 2 to 30.

        Returns:
            the frames as a strip (PNG) and a back-and-forth animation (GIF).
        """
        request = SweepRequest.parse(seed, truncation, latent, edit, direction, frames, directions=self.directions,
                                     nz=self.nz)
        result = self.render_sweep(request)
        return (self.files.write(f"{request.stem}-strip.png", result.strip_png),
                self.files.write(f"{request.stem}.gif", result.gif))

    def arithmetic(self, expression: str, truncation: float, noise_seed: float) -> tuple[str, str]:
        """Face arithmetic as in the DCGAN paper: mean latents of groups, added and subtracted.

        Args:
            expression: groups of seeds (or latent tokens) joined by + and -, e.g. "0,27,47 - 1,15,49 + 21,25,34" (smiling women - neutral women + neutral men); a minus needs a space on each side; at most 8 groups of 64 faces.
            truncation: scale of the seeds' latents, in (0, 4]; 1.0 = off.
            noise_seed: seed of the 8 neighbours' noise (uniform ±0.25 around the result), 0 to 2147483647.

        Returns:
            the figure (each group's mean face with its sign, then the result in the middle of its 8
            neighbours, PNG) and the result's latent token.
        """
        request = ArithmeticRequest.parse(expression, truncation, noise_seed, nz=self.nz)
        grid, means, z = self.render_arithmetic(request)
        figure = arithmetic_figure(imaging.grid_image(means.images, nrow=len(means.images)),
                                   [group.sign for group in request.groups], imaging.grid_image(grid.images, nrow=3))
        return self.files.write(f"{request.stem}.png", imaging.png_bytes(figure)), latent_token.encode(z)

    def complete(self, seed: float, truncation: float, latent: str, mask: str) -> tuple[str, dict[str, Any]]:
        """Hide part of a generated face and let the model fill it in from the rest.

        Args:
            seed: the face's seed (0 to 4294967295); ignored when latent is given.
            truncation: scale of the seed's latent, in (0, 4]; 1.0 = off.
            latent: optional latent token (starts "z1.") of the face to complete instead.
            mask: what to hide: left, right, top, bottom (halves), eyes, mouth (bands), centre (a 32×32 square), or a brushed mask from the page (686 characters starting "m1.").

        Returns:
            the completed face (PNG: the visible pixels, the hidden part filled, blended at the seam) and a
            summary: the mask, hidden pixels, PSNR of the visible part, steps, seconds, the latent found.
        """
        request = CompletionRequest.parse(seed, truncation, latent, mask, nz=self.nz)
        completion, seconds = self._complete(request.source, request.mask)
        completed = imaging.png_bytes(imaging.to_pil(completion.composite[None])[0])
        return self.files.write(f"{request.stem}.png", completed), completion_summary(completion, seconds)

    def complete_photo(self, photo: dict | None, mask: str) -> tuple[str, dict[str, Any]]:
        """Hide part of a photo (JPEG, PNG or WebP, at most 10 MB) and let the model fill it in.

        The photo is centre-cropped to 64×64 like the training faces and deleted as soon as it has been
        read. Nothing of it is written anywhere: the completed photo comes back inline, in the summary.

        Args:
            photo: the photo (an uploaded file).
            mask: left, right, top, bottom, eyes, mouth, centre, or a brushed mask ("m1." …).

        Returns:
            the face the model drew for it (PNG) and a summary whose "completed_png" is the completed photo
            (a data: URI), with the mask, hidden pixels, PSNR of the visible part, steps and seconds.
        """
        crop = read_photo(photo, self.uploads)  # first: the upload is deleted whatever else is wrong
        completion, seconds = self._complete(crop, parse_mask(mask))
        name = f"dcgan-completed-{latent_token.encode(completion.projection.z)[3:15]}.png"
        generated = imaging.png_bytes(imaging.to_pil(completion.projection.image[None])[0])
        return (self.files.write(name, generated),
                {**completion_summary(completion, seconds), "completed_png": face_data_uri(completion.composite)})

    def _complete(self, target: Any, mask: Any) -> tuple[Any, float]:
        started = time.perf_counter()
        completion = self.render_completion(target, mask)
        return completion, time.perf_counter() - started

    # -- page handlers: Edit --------------------------------------------------------------------------

    def edit_page(self, seed: float, truncation: float, latent: str, *amounts: float) -> tuple[str, str, str]:
        """The sliders' face: its file, its latent token and the edit as text (for the URL and the API)."""
        text = format_edit({index: check_amount(amount, self.directions.label(index))
                            for index, amount in enumerate(amounts) if amount})
        face, token = self.edit(seed, truncation, latent, text)
        return face, token, text

    def edit_text_page(self, seed: float, truncation: float, latent: str, text: str) -> tuple:
        """An edit typed as text (or read from a link): the sliders set from it, then its face."""
        request = EditRequest.parse(seed, truncation, latent, text, directions=self.directions, nz=self.nz)
        beyond = [index for index in request.edit if index >= self.slider_count]
        if beyond:
            raise ValueError(f"the page has sliders for directions 0 to {self.slider_count - 1}; use the API "
                             f"for direction {beyond[0]}")
        values = [request.edit.get(index, 0.0) for index in range(self.slider_count)]
        face, token = self.edit(seed, truncation, latent, request.edit_text)
        return (*values, face, token, request.edit_text)

    def sweep_page(self, seed: float, truncation: float, latent: str, text: str, direction: float,
                   frames: float) -> tuple[str, str, str]:
        strip, gif = self.sweep(seed, truncation, latent, text, str(direction), frames)
        return strip, gif, gif

    def edit_from_walk(self, seed_a: float, seed_b: float, more_seeds: str, frames: float, method: str,
                       closed: bool, truncation: float, start_latent: str, end_latent: str, frame: float) -> tuple:
        """Frame ``frame`` (1-based) of the current walk, as a latent token for the Edit tab."""
        request = InterpolateRequest.parse(seed_a, seed_b, more_seeds, frames, method, closed, truncation,
                                           start_latent, end_latent, nz=self.nz)
        index = check_whole_number(frame, "frame", 1, request.frames) - 1
        return latent_token.encode(self.walk_latent(request, index)), gr.Tabs(selected="edit")

    # -- page handlers: Arithmetic ------------------------------------------------------------------------

    def arithmetic_page(self, group_a: str, group_b: str, group_c: str, noise_seed: float) -> tuple[str, str, str]:
        expression = f"{group_a} - {group_b} + {group_c}"
        for letter, text in zip("ABC", (group_a, group_b, group_c)):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"group {letter} is empty: click faces below to fill it")
        figure, token = self.arithmetic(expression, 1.0, noise_seed)
        return figure, token, figure

    def arithmetic_gallery(self, start: float) -> tuple[list, list[int]]:
        """Faces to pick groups from: ARITHMETIC_TILES seeds from ``start``; the seeds stay on the server."""
        request = GenerateRequest.parse(start, ARITHMETIC_TILES, 1.0)
        grid = self.render_grid(request)
        tiles = [(self.files.write(tile_name(seed, 1.0), png), f"seed {seed}")
                 for seed, png in zip(request.seeds, grid.tile_pngs())]
        return tiles, request.seeds

    def add_to_group(self, shown: list[int], group: str, a: str, b: str, c: str,
                     event: gr.SelectData) -> tuple[str, str, str]:
        """A face was clicked: its seed (from the server's list, by index) joins the chosen group."""
        index = event.index if isinstance(event.index, int) and not isinstance(event.index, bool) else -1
        if not 0 <= index < len(shown):
            raise ValueError("click a face of the gallery")
        groups = {"A": a or "", "B": b or "", "C": c or ""}
        if group not in groups:
            raise ValueError("choose group A, B or C")
        current = [part for part in re.split(r"[,\s]+", groups[group].strip()) if part]
        if len(current) >= MAX_GROUP_SEEDS:
            raise ValueError(f"group {group} is full ({MAX_GROUP_SEEDS} faces)")
        groups[group] = ", ".join([*current, str(shown[index])])
        gr.Info(f"seed {shown[index]} → group {group}")
        return groups["A"], groups["B"], groups["C"]

    # -- page handlers: Complete -------------------------------------------------------------------------

    def complete_source(self, source: str, seed: float, truncation: float, latent: str, crop: Any) -> Any:
        """The face to brush on (inline, never a file): a seed's, a latent token's or the photo's crop."""
        if source == "my photo":
            if crop is None:
                raise ValueError("upload a photo first")
            return face_data_uri(crop_tensor(crop))
        token = latent if source == "latent token" else ""
        if source == "latent token" and not (isinstance(token, str) and token.strip()):
            raise ValueError("paste a latent token (from Your face, Edit or Arithmetic) first")
        face, _ = self.render_edit(EditRequest(FaceSource.parse(seed, truncation, token, nz=self.nz), ()))
        return face_data_uri(face.images[0])

    def complete_photo_upload(self, photo: dict | None) -> tuple:
        """Read the photo (checked, then deleted); its crop stays in the session's memory only."""
        crop = read_photo(photo, self.uploads)
        return gr.Image(value=None), crop.numpy(), face_data_uri(crop), "my photo"

    def complete_page(self, source: str, seed: float, truncation: float, latent: str, crop: Any,
                      mask: str) -> tuple[str, str]:
        """The completion, shown inline (original · visible part · filled · the model's face), and its numbers."""
        hidden = parse_mask(mask)
        if source == "my photo":
            if crop is None:
                raise ValueError("upload a photo first")
            target: Any = crop_tensor(crop)
        else:
            token = latent if source == "latent token" else ""
            if source == "latent token" and not (isinstance(token, str) and token.strip()):
                raise ValueError("paste a latent token first, or pick the seed source")
            target = FaceSource.parse(seed, truncation, token, nz=self.nz)
        completion, seconds = self._complete(target, hidden)
        pictures = [("original", completion.projection.target), ("what the model saw", completion.masked_target),
                    ("completed", completion.composite), ("the model's face", completion.projection.image)]
        figures = "".join(f'<figure><img alt="{label}" src="{face_data_uri(image)}"><figcaption>{label}'
                          "</figcaption></figure>" for label, image in pictures)
        download = (f'<a download="dcgan-completed.png" href="{face_data_uri(completion.composite)}" '
                    'id="completed-download">Download the completed face (PNG)</a>')
        summary = completion_summary(completion, seconds)
        text = (f"**{summary['hidden_pixels']}** of 4096 pixels filled in · visible part matched at "
                f"**{summary['visible_psnr_db']} dB** PSNR · {summary['steps']} Adam steps in {seconds:.1f} s")
        return f'<div class="completion-row">{figures}</div>{download}', text

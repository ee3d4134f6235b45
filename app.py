"""The dcgan_hf demo: a thin Gradio UI over ``dcgan_hf.serving``.

    python app.py                                   # the bundled model, offline
    python app.py --model user/dcgan-celeba@epoch-5 # a Hub model (or DCGAN_MODEL=...)
    python app.py --model path/to/folder            # a save_pretrained folder or a train.py run folder
    python app.py --mcp                             # also an MCP server (or DCGAN_MCP=1)

The same file runs unchanged as a Hugging Face Space (``app_file: app.py``). All model
work - loading, devices, validation, the inference worker, projection, training history -
lives in dcgan_hf; this file lays out components, maps errors to messages and keeps the
page's state in its URL.

API (``gradio_client``)::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    grid_png = client.predict(seed=42, n=16, truncation=1.0, api_name="/generate")
    face_png, token, summary = client.predict(photo=handle_file("me.jpg"), api_name="/project")
    strip_png, gif = client.predict(seed_a=0, seed_b=42, start_latent=token, api_name="/interpolate")
    edited_png, edited = client.predict(seed=7, truncation=1.0, latent=token, edit="smile=2", api_name="/edit")
    figure_png, result = client.predict(expression="0,17,53 - 3,14,49 + 34,46,61", truncation=1.0,
                                        noise_seed=0, api_name="/arithmetic")
    filled_png, summary = client.predict(seed=7, truncation=1.0, latent="", mask="eyes", api_name="/complete")
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

try:  # ZeroGPU Spaces: `spaces` must be imported before torch initialises CUDA
    import spaces
except ImportError:
    spaces = None

import gradio as gr
from gradio import utils as gradio_utils
from starlette.middleware import Middleware

import numpy as np
import torch

from dcgan_hf import images as imaging, latent_token, live, photos
from dcgan_hf.api_calls import ApiShapes
from dcgan_hf.arithmetic import figure as arithmetic_figure, split_expression
from dcgan_hf.completion import PRESET_BOXES, PRESET_LABELS, PRESETS, parse_mask, psnr
from dcgan_hf.directions import MAX_AMOUNT, check_amount, format_edit
from dcgan_hf.hub import BUNDLED_MODEL
from dcgan_hf.models import ModelLoadError
from dcgan_hf.page_state import KEYS, PageState, parse_query, query_defaults
from dcgan_hf.serving import (
    GIF_FRAME_MS,
    MAX_FRAMES,
    MAX_IMAGES,
    METHODS,
    MIN_FRAMES,
    GenerateRequest,
    InterpolateRequest,
    ModelServer,
    OutputFolder,
    check_seed_input,
    check_truncation,
    check_whole_number,
    parse_latent_input,
    parse_seed_list,
    random_seed,
)
from dcgan_hf.route_guard import GuardSettings, RouteGuard
from dcgan_hf.steering import (
    MAX_GROUP_SEEDS,
    ArithmeticRequest,
    CompletionRequest,
    EditRequest,
    FaceSource,
    SweepRequest,
    mask_label,
)
from dcgan_hf.uploads import UploadLedger, discard

T = TypeVar("T")
logger = logging.getLogger("app")

CONCURRENCY_LIMIT = 4  # requests in flight at once; they share one inference worker
MAX_QUEUE = 64  # waiting requests beyond this are turned away with "queue full"
UI_CONCURRENCY = 8  # page-only events (tile clicks, tab switches): no model work
# spaces.GPU durations (s), sized from each call's worst case measured on the 2-vCPU CPU box
# (bench/RESULTS.md §9: 0.2 / 0.65 / 3.1 / 2.9 s; §13: an edit, the largest arithmetic or a
# 30-frame sweep ≤ 1.4 s, a completion stops at 4.5 s like a projection), ×3 and at least 10 s
# for the GPU's start-up in a fresh ZeroGPU process; the Training GIF may first download up to
# 60 revisions.
# ZeroGPU schedules short durations first, so these stay as small as is safe.
GPU_SECONDS = {"generate": 10, "interpolate": 10, "project": 15, "training": 60, "edit": 10, "complete": 15}
CSS = """
#gif img, #walk-preview img, #larger img, #reconstruction img, #training-grid img, #training-gif img
  { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
#gallery img { image-rendering: pixelated; }
#strip img, #training-strip img { width: 100%; height: auto; image-rendering: pixelated; }
.photo-pair { display: flex; gap: 12px; align-items: flex-end; }
.photo-pair figure { margin: 0; }
.photo-preview img { max-width: 256px; max-height: 256px; }
.photo-crop img { width: 192px; aspect-ratio: 1; image-rendering: pixelated; }
#edit-face img, #sweep-gif img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
#sweep-strip img, #arithmetic-figure img { width: 100%; height: auto; image-rendering: pixelated; }
#arithmetic-gallery img { image-rendering: pixelated; }
.brush { position: relative; width: 256px; height: 256px; touch-action: none; }
.brush img, .brush canvas { position: absolute; inset: 0; width: 256px; height: 256px; image-rendering: pixelated; }
.brush canvas { cursor: crosshair; }
.completion-row { display: flex; gap: 8px; flex-wrap: wrap; }
.completion-row figure { margin: 0; }
.completion-row img { width: 128px; aspect-ratio: 1; image-rendering: pixelated; }
"""  # 64-px faces: scale them up, crisp
GENERATE_EXAMPLES = ((42, 16, 1.0), (2024, 64, 0.7), (7, 1, 1.0))
INTERPOLATE_EXAMPLES = (
    (1, 2, "", 24, "slerp", False, 1.0),
    (10, 20, "30, 40", 40, "slerp", True, 0.8),
    (5, 6, "", 12, "lerp", False, 1.0),
)


def on_gpu(fn: Callable[..., T], kind: str) -> Callable[..., T]:
    """``spaces.GPU(duration=…)`` when the package is there (a no-op off ZeroGPU), else ``fn`` itself."""
    return spaces.GPU(duration=GPU_SECONDS[kind])(fn) if spaces is not None else fn


def messages(fn: Callable[..., T]) -> Callable[..., T]:
    """Every failure reaches the user as a message: a bad value says what is wrong; anything
    unexpected is logged here and named there, and the server keeps serving."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, OverflowError) as error:  # ModelLoadError and PhotoError are ValueErrors
            raise gr.Error(str(error) or type(error).__name__, print_exception=False) from None
        except Exception as error:  # noqa: BLE001 - the one place unexpected errors become messages
            logger.exception("%s failed", fn.__name__)
            raise gr.Error(f"the server could not do this ({type(error).__name__}); it keeps serving") from None

    return wrapper


def data_uri(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


# the end of both scripts below: the page's URL takes ``params`` as its query, without a reload
SET_QUERY = """  const query = params.toString();
  window.history.replaceState(window.history.state, "", window.location.pathname + (query ? "?" + query : ""));
  return [];"""


def url_script(keys: Sequence[str]) -> str:
    """JS for an event: write ``keys``' values (the event's inputs) into the page URL, defaults left out."""
    defaults = {key: query_defaults()[key] for key in keys}
    return f"""(...values) => {{
  const keys = {json.dumps(list(keys))}, defaults = {json.dumps(defaults)};
  const text = (v) => typeof v === "boolean" ? (v ? "1" : "0") : (v === null || v === undefined ? "" : String(v));
  const params = new URLSearchParams(window.location.search);
  keys.forEach((key, i) => {{
    if (text(values[i]) === text(defaults[key])) params.delete(key); else params.set(key, text(values[i]));
  }});
{SET_QUERY}
}}"""


def tab_script(tab: str) -> str:
    """JS for a tab's select event: put the tab in the URL, once the link's own state has been read
    (tabs also fire when the page builds them, before the load event has seen the query)."""
    return f"""() => {{
  if (!window.dcganLoaded) return [];
  const params = new URLSearchParams(window.location.search);
  if ({json.dumps(tab)} === "generate") params.delete("tab"); else params.set("tab", {json.dumps(tab)});
{SET_QUERY}
}}"""


LOADED_SCRIPT = "() => { window.dcganLoaded = true; return []; }"


class Demo:
    """The handlers: each validates with dcgan_hf.serving, runs the model there, writes results."""

    def __init__(self, server: ModelServer, output_dir: str | os.PathLike, uploads: UploadLedger) -> None:
        self.server = server
        self.files = OutputFolder(output_dir)
        self.uploads = uploads  # the photos the upload route stored: only these are read and deleted
        self.nz = server.generator.nz
        self.render_grid = on_gpu(server.generate, "generate")
        self.render_path = on_gpu(server.interpolate, "interpolate")
        self.render_projection = on_gpu(server.project, "project")
        self.render_epoch = on_gpu(server.training_grid, "training")
        self.render_epochs = on_gpu(server.training_walk, "training")

    # -- the API (public endpoints, also MCP tools) ---------------------------------------------

    def generate(self, seed: float, n: float, truncation: float) -> str:
        """Generate faces for the consecutive seeds seed, seed+1, ..., seed+n-1 as one PNG grid.

        Args:
            seed: first seed, a whole number from 0 to 4294967295; each seed is always the same face.
            n: how many faces, 1 to 64 (the grid is near-square, 2 px black borders).
            truncation: scale of the latent vectors, in (0, 4]; 1.0 = off, 0.7 = more average faces.

        Returns:
            the path of a lossless PNG grid, seeds in reading order.
        """
        request = GenerateRequest.parse(seed, n, truncation)
        return self.files.write(request.filename, self.render_grid(request).png)

    def interpolate(
        self, seed_a: float, seed_b: float, more_seeds: str, frames: float, method: str, closed: bool,
        truncation: float, start_latent: str = "", end_latent: str = "",
    ) -> tuple[str, str]:
        """A latent walk seed_a → seed_b → more seeds (→ back to seed_a if closed): PNG frame strip and GIF.

        Args:
            seed_a: the first face's seed (0 to 4294967295); ignored when start_latent is given.
            seed_b: the second face's seed; ignored when end_latent is given.
            more_seeds: optional further seeds to walk through, e.g. "7, 99" (at most 16 faces in all).
            frames: number of frames, 2 to 60.
            method: "slerp" (great circle, the usual walk for Gaussian latents) or "lerp" (straight line).
            closed: true to loop back to the first face (for a seamless GIF).
            truncation: scale of the seeds' latents, in (0, 4]; 1.0 = off.
            start_latent: optional latent token from /project (starts "z1."): the walk starts at that face.
            end_latent: optional latent token from /project: the walk's second face.

        Returns:
            the frame strip (PNG, 12 frames a row) and the animation (looping GIF).
        """
        request = InterpolateRequest.parse(seed_a, seed_b, more_seeds, frames, method, closed, truncation,
                                           start_latent, end_latent, nz=self.nz)
        result = self.render_path(request)
        stem = request.filename_stem
        return self.files.write(f"{stem}-strip.png", result.strip_png), self.files.write(f"{stem}.gif", result.gif)

    def project(self, photo: dict | None) -> tuple[str, str, dict[str, Any]]:
        """Find the face in latent space closest to a photo (JPEG, PNG or WebP, at most 10 MB).

        The photo is centre-cropped and resized to 64×64 like the training faces, then a latent
        is optimised to reproduce it. The uploaded file is deleted as soon as it has been read.

        Args:
            photo: the photo (an uploaded file).

        Returns:
            the reconstruction (PNG), its latent token (pass it to /interpolate as start_latent or
            end_latent), and a summary: loss, MSE, PSNR in dB, steps, seconds.
        """
        projection = self._project(photo)
        return (self.files.write(projection.filename, projection.reconstruction_png), projection.token,
                projection.summary())

    def training_grid(self, epoch: float, seeds: str, truncation: float) -> tuple[str, str]:
        """The same seeds drawn by the model at one epoch of its training run.

        Args:
            epoch: the epoch (the last saved epoch up to it is used; 0 = the newest).
            seeds: seeds and ranges, e.g. "0-15, 42" (at most 64).
            truncation: scale of the latents, in (0, 4]; 1.0 = off.

        Returns:
            the grid (PNG) and which revision drew it.
        """
        history = self.server.history
        epoch = check_whole_number(epoch, "epoch", 0, 10**7)
        seed_list = parse_seed_list(seeds, "seeds")
        scale = check_truncation(truncation)
        revision, grid = self.render_epoch(epoch or history.epochs[-1], seed_list, scale)
        name = f"dcgan-{revision.label}-{seed_list[0]}-n{len(seed_list)}-{grid_digest(seed_list)}-t{scale:g}.png"
        return self.files.write(name, grid.png), f"Showing **{revision.describe()}** of {history.where}"

    def training_gif(self, seed: float, truncation: float) -> tuple[str, str, str]:
        """One seed at every epoch of the model's training run, oldest first.

        Args:
            seed: the seed to follow (0 to 4294967295).
            truncation: scale of the latent, in (0, 4]; 1.0 = off.

        Returns:
            the animation (GIF), the frames as a strip (PNG) and the epochs shown.
        """
        seed = check_seed_input(seed)
        scale = check_truncation(truncation)
        walk = self.render_epochs(seed, scale)
        stem = f"dcgan-epochs-seed{seed}-t{scale:g}-{walk.revisions[0].epoch}-{walk.revisions[-1].epoch}"
        labels = ", ".join(revision.label for revision in walk.revisions)
        return (self.files.write(f"{stem}.gif", walk.gif), self.files.write(f"{stem}-strip.png", walk.strip_png),
                f"Seed {seed} at {labels}")

    def model_info(self) -> dict[str, Any]:
        """Which model, revision, config, device and precision serve, any fallback, and how busy it is."""
        gauge = self.server.gauge
        directions = self.server.directions
        return {**self.server.status.as_dict(), "requests_running": gauge.running,
                "peak_requests_running": gauge.peak,
                "directions": [directions.label(index) for index in range(directions.count)]}

    # -- page-only handlers ------------------------------------------------------------------

    def generate_page(self, seed: float, n: float, truncation: float) -> tuple[list, list, str]:
        """The gallery (one tile per seed, captioned), its (seed, truncation) pairs, and the grid PNG.

        The pairs stay on the server (a gr.State): a click on a tile is mapped to its seed here,
        from the index alone, never from anything else the browser sends.
        """
        request = GenerateRequest.parse(seed, n, truncation)
        grid = self.render_grid(request)
        tiles = [
            (self.files.write(tile_name(s, request.truncation), png), f"seed {s}")
            for s, png in zip(request.seeds, grid.tile_pngs())
        ]
        shown = [(s, request.truncation) for s in request.seeds]
        return tiles, shown, self.files.write(request.filename, grid.png)

    def larger(self, picked: tuple[int, float] | None) -> Any:
        """The clicked face on its own (drawn again: the gallery's file may be long gone), shown big."""
        if picked is None:
            raise ValueError("click a face first")
        seed, truncation = picked
        request = GenerateRequest.parse(seed, 1, truncation)
        path = self.files.write(tile_name(seed, request.truncation), self.render_grid(request).tile_pngs()[0])
        return gr.Image(value=path, visible=True)

    def project_page(self, photo: dict | None) -> tuple[Any, str, str, str, str]:
        """The photo and its 64×64 crop (inline: never written to disk), the reconstruction, summary, token.

        The upload field is cleared: its file is gone, and a new photo can be dropped right away.
        """
        projection = self._project(photo)
        result = projection.result
        crop = (
            '<div class="photo-pair">'
            f'<figure class="photo-preview"><img alt="your photo" src="{data_uri(projection.preview_jpeg, "jpeg")}">'
            "<figcaption>your photo</figcaption></figure>"
            f'<figure class="photo-crop"><img alt="your photo, 64×64" src="{data_uri(projection.target_png)}">'
            "<figcaption>as the model sees it (centre crop, 64×64)</figcaption></figure></div>"
        )
        loss = (f"**loss** {result.loss:.4f} · **MSE** {result.mse:.4f} · **PSNR** {result.psnr:.1f} dB · "
                f"{result.steps} Adam steps in {projection.seconds:.1f} s · "
                + ("pixel + discriminator-feature loss" if result.used_discriminator else "pixel loss"))
        return (gr.Image(value=None), crop, self.files.write(projection.filename, projection.reconstruction_png), loss,
                projection.token)

    def load_page(self, request: gr.Request) -> tuple:
        """A link's state and its faces (a bare link keeps the defaults rendered at start-up).

        Returns the tab, the tab again for the follow-up events ("" for a bare link), every
        state value, and the gallery, its seeds and the grid file.
        """
        query = dict(request.query_params) if request else {}
        if not any(key in KEYS for key in query):  # a bare link: the pre-rendered first paint stands
            return (gr.skip(), "", *[gr.skip()] * (len(self.state_fields()) + 3))
        state, notes = parse_query(query, self.query_checks())
        for note in notes:
            gr.Warning(note)
        if state.tab == "training" and self.server.history is None:
            state = PageState(**{**state.as_dict(), "tab": "generate"})
        try:
            tiles, seeds, grid = self.generate_page(state.seed, state.count, state.truncation)
        except ValueError as error:
            gr.Warning(f"the link's grid could not be drawn: {error}")
            state = PageState(**{**state.as_dict(), "seed": 42, "count": 16, "truncation": 1.0})
            tiles, seeds, grid = self.generate_page(state.seed, state.count, state.truncation)
        if self.server.history is not None and state.epoch == 0:  # 0 in a link: the newest epoch
            state = PageState(**{**state.as_dict(), "epoch": self.server.history.epochs[-1]})
        return (gr.Tabs(selected=state.tab), state.tab, *[getattr(state, name) for name in self.state_fields()],
                tiles, seeds, grid)

    def query_checks(self) -> dict[str, Callable[[Any], Any]]:
        """The form's own validators, applied to a link's values."""
        history = self.server.history
        return {
            "seed": check_seed_input, "seed_a": check_seed_input, "seed_b": check_seed_input,
            "gif_seed": check_seed_input,
            "count": lambda value: check_whole_number(value, "n", 1, MAX_IMAGES),
            "frames": lambda value: check_whole_number(value, "frames", MIN_FRAMES, MAX_FRAMES),
            "truncation": check_truncation, "walk_truncation": check_truncation,
            "method": lambda value: value if value in METHODS else _raise(f"one of {', '.join(METHODS)}"),
            "more_seeds": lambda value: (InterpolateRequest.parse(0, 0, value), value)[1],
            "start_latent": lambda value: parse_latent_input(value, self.nz, "za") or "",
            "end_latent": lambda value: parse_latent_input(value, self.nz, "zb") or "",
            "training_seeds": lambda value: (parse_seed_list(value, "tseeds"), value)[1],
            "epoch": lambda value: value if history is None or value == 0 or value in history.epochs
            else _raise(f"this run has epochs {', '.join(map(str, history.epochs))}"),
            **steering_checks(self.server.directions, self.nz),
        }

    def state_fields(self) -> list[str]:
        fields = ["seed", "count", "truncation", "seed_a", "seed_b", "more_seeds", "frames", "method", "closed",
                  "walk_truncation", "start_latent", "end_latent"]
        if self.server.history is not None:
            fields += ["epoch", "training_seeds", "gif_seed"]
        return fields + STEERING_FIELDS

    def _project(self, photo: dict | None):
        """Claim the upload (this request's alone from now), read it (size, type and dimensions checked
        first), delete it, project it. A path that is no unclaimed upload of this app is neither read
        nor deleted: a result or the first paint stays for everyone who sees it."""
        path = claimed_upload(photo, self.uploads)
        try:
            picture = photos.photo_from_file(path)
        finally:
            discard(path)
        return self.render_projection(picture)


def when_linked(handler: Callable[..., T], tab: str | None = None) -> Callable[..., Any]:
    """``handler`` for a link's first paint: run only when the link carried state (and opened ``tab``)."""

    def run(first_tab: str, *values: Any) -> Any:
        wanted = first_tab != "" and (tab is None or first_tab == tab)
        return handler(*values) if wanted else gr.skip()

    return run


def tile_name(seed: int, truncation: float) -> str:
    return f"dcgan-seed{seed}-t{truncation:g}.png"


def _raise(message: str) -> Any:
    raise ValueError(message)


def grid_digest(seeds: Sequence[int]) -> str:
    return hashlib.sha256(",".join(map(str, seeds)).encode()).hexdigest()[:8]


def claimed_upload(photo: object, uploads: UploadLedger) -> Path:
    """The uploaded file behind a FileData value, claimed from the ledger of uploads (see dcgan_hf.uploads)."""
    if photo is None:
        raise ValueError(f"upload a photo first ({photos.ACCEPTED}, at most {photos.MAX_BYTES // 2**20} MB)")
    path = photo.get("path") if isinstance(photo, dict) else None
    if not isinstance(path, str) or not path:
        raise ValueError("the photo must be an uploaded file")
    claimed = uploads.claim(path)
    if claimed is None or not claimed.is_file():
        raise ValueError("the photo must be a file uploaded for this request, and each upload is used once: "
                         "upload it again")
    return claimed


def gradio_cache_dir() -> Path:
    """Where Gradio stores uploads and results (``GRADIO_TEMP_DIR``, else <tmp>/gradio)."""
    return Path(gradio_utils.get_upload_folder()).resolve()


# -- steering: Edit, Arithmetic and Complete tabs (dcgan_hf.steering checks, dcgan_hf.serving runs) --------

MAX_SLIDERS = 12  # directions with a slider on the page; the API takes every direction the model has
EDIT_FIELDS = ["edit_seed", "edit_truncation", "edit_latent", "edit", "sweep_direction"]
ARITHMETIC_FIELDS = ["group_a", "group_b", "group_c", "noise_seed"]
COMPLETE_FIELDS = ["complete_seed", "complete_latent", "mask"]
STEERING_FIELDS = EDIT_FIELDS + ARITHMETIC_FIELDS + COMPLETE_FIELDS
COMPLETE_SOURCES = ("seed", "latent token", "my photo")
ARITHMETIC_TILES = 24  # faces the Arithmetic tab's gallery shows at a time


def face_data_uri(image: Any) -> str:
    """A uint8 (C, 64, 64) face as an inline PNG: photos and their crops are never written to disk."""
    return data_uri(imaging.png_bytes(imaging.to_pil(image[None])[0]))


class SteeringHandlers:
    """Edits along the model's directions, face arithmetic and completion: API endpoints (also MCP
    tools) and the page's handlers. Every value is checked by dcgan_hf.steering."""

    def __init__(self, server: ModelServer, files: OutputFolder, uploads: UploadLedger) -> None:
        self.server, self.files, self.uploads = server, files, uploads
        self.nz = server.generator.nz
        self.directions = server.directions
        self.render_edit = on_gpu(server.edit, "edit")
        self.render_sweep = on_gpu(server.sweep, "edit")
        self.render_arithmetic = on_gpu(server.arithmetic, "edit")
        self.render_completion = on_gpu(server.complete, "complete")
        self.walk_latent = on_gpu(server.walk_latent, "edit")
        self.render_grid = on_gpu(server.generate, "generate")

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
            expression: groups of seeds (or latent tokens) joined by + and -, e.g. "0,17,53 - 3,14,49 + 34,46,61" (smiling women - neutral women + neutral men); a minus needs a space on each side; at most 8 groups of 64 faces.
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


def completion_summary(completion: Any, seconds: float) -> dict[str, Any]:
    return {
        "mask": mask_label(completion.mask), "hidden_pixels": int(completion.mask.sum()),
        "visible_psnr_db": round(psnr(completion.visible_mse), 2), "steps": completion.projection.steps,
        "seconds": round(seconds, 2), "latent": latent_token.encode(completion.projection.z),
    }


def read_photo(photo: object, uploads: UploadLedger) -> Any:
    """An uploaded photo's 64×64 crop (uint8 tensor): claimed from the ledger (this request's alone),
    size, type and dimensions checked first, file deleted. A path that is no unclaimed upload of this
    app is neither read nor deleted."""
    path = claimed_upload(photo, uploads)
    try:
        return photos.photo_from_file(path).pixels
    finally:
        discard(path)


def crop_tensor(crop: Any) -> Any:
    """The session's photo crop (kept as a uint8 array in a gr.State) back as a tensor, checked."""
    array = np.asarray(crop)
    if array.dtype != np.uint8 or array.shape != (3, 64, 64):
        raise ValueError("upload the photo again")
    return torch.from_numpy(array.copy())


def steering_checks(directions: Any, nz: int) -> dict[str, Callable[[Any], Any]]:
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
        "noise_seed": lambda value: check_whole_number(value, "noise", 0, 2**31 - 1),
        "mask": lambda value: (parse_mask(value), value.strip())[1],
    }


BRUSH_TEMPLATE = (
    '<div class="brush"><img class="brush-face" alt="the face to complete" src="${value}">'
    '<canvas class="brush-canvas" width="64" height="64"></canvas></div>'
    '<div class="brush-tools"><label>brush size <input class="brush-size" type="range" min="1" max="12" '
    'value="4"></label> <button class="brush-erase" type="button">erase</button> '
    '<button class="brush-clear" type="button">clear</button></div>'
)


# the brush over the Complete tab's face; brush_script fills in the presets' boxes
BRUSH_JS = """
const SIDE = 64, PREFIX = "m1.", PRESETS = __PRESETS__;
const field = () => document.querySelector("#mask-spec textarea, #mask-spec input");
let mask = new Uint8Array(SIDE * SIDE), shown = null, drawing = false, erasing = false;
function decode(text) {
  const bits = new Uint8Array(SIDE * SIDE);
  text = (text || "").trim();
  if (PRESETS[text]) {
    const [top, bottom, left, right] = PRESETS[text];
    for (let y = top; y < bottom; y++) for (let x = left; x < right; x++) bits[y * SIDE + x] = 1;
  } else if (text.startsWith(PREFIX)) {
    let body = text.slice(PREFIX.length).replace(/-/g, "+").replace(/_/g, "/");
    while (body.length % 4) body += "=";
    try {
      const raw = atob(body);
      for (let i = 0; i < SIDE * SIDE; i++) bits[i] = (raw.charCodeAt(i >> 3) >> (7 - (i & 7))) & 1;
    } catch (error) { /* a damaged token: the server says so when it is used */ }
  }
  return bits;
}
function encode() {
  let raw = "";
  for (let byte = 0; byte < SIDE * SIDE / 8; byte++) {
    let value = 0;
    for (let bit = 0; bit < 8; bit++) value = (value << 1) | mask[byte * 8 + bit];
    raw += String.fromCharCode(value);
  }
  return PREFIX + btoa(raw).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
}
function paint() {
  const canvas = element.querySelector(".brush-canvas");
  if (!canvas) return;
  const context = canvas.getContext("2d"), image = context.createImageData(SIDE, SIDE);
  for (let i = 0; i < SIDE * SIDE; i++) if (mask[i]) image.data.set([255, 40, 40, 170], 4 * i);
  context.putImageData(image, 0, 0);
}
function publish() {
  const box = field();
  if (!box) return;
  box.value = mask.some((bit) => bit) ? encode() : "";
  shown = box.value;
  box.dispatchEvent(new Event("input", { bubbles: true }));
}
function sync() {
  const box = field();
  if (box && box.value !== shown) { shown = box.value; mask = decode(shown); paint(); }
}
function stamp(event) {
  const canvas = element.querySelector(".brush-canvas"), rect = canvas.getBoundingClientRect();
  const cx = (event.clientX - rect.left) * SIDE / rect.width, cy = (event.clientY - rect.top) * SIDE / rect.height;
  const radius = Number(element.querySelector(".brush-size").value);
  for (let y = Math.max(0, Math.floor(cy - radius)); y < Math.min(SIDE, Math.ceil(cy + radius)); y++)
    for (let x = Math.max(0, Math.floor(cx - radius)); x < Math.min(SIDE, Math.ceil(cx + radius)); x++)
      if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= radius * radius) mask[y * SIDE + x] = erasing ? 0 : 1;
  paint();
}
element.addEventListener("pointerdown", (event) => {
  if (!event.target.classList.contains("brush-canvas")) return;
  drawing = true;
  event.target.setPointerCapture(event.pointerId);
  event.preventDefault();
  stamp(event);
});
element.addEventListener("pointermove", (event) => { if (drawing) stamp(event); });
const stop = () => { if (drawing) { drawing = false; publish(); } };
element.addEventListener("pointerup", stop);
element.addEventListener("pointercancel", stop);
element.addEventListener("click", (event) => {
  if (event.target.classList.contains("brush-clear")) { mask = new Uint8Array(SIDE * SIDE); paint(); publish(); }
  if (event.target.classList.contains("brush-erase")) {
    erasing = !erasing;
    event.target.textContent = erasing ? "paint" : "erase";
  }
});
watch("value", () => { shown = null; sync(); });
setInterval(sync, 250);  // the box also changes from Python (a preset, a link): repaint when it does
sync();
"""


def brush_script(presets: dict[str, tuple[int, int, int, int]]) -> str:
    """JS for the brush: paint the 64×64 mask over the face; the mask lives in the #mask-spec box as text
    (a preset's name or "m1." + base64url of its 4096 bits, dcgan_hf.completion.encode_mask), so it goes
    into the URL and the API as it is. Painting ends with an ``input`` event on that box."""
    return BRUSH_JS.replace("__PRESETS__", json.dumps(presets))


def live_panel(kind: str, ids: dict[str, Any]) -> gr.HTML:
    """Live mode (issue 18): the switch, its canvas (and a walk's play/scrub), run by dcgan_hf/static/live.js
    in the browser; ``ids`` are the elem_ids of the tab's fields it reads and the sliders it draws."""
    return gr.HTML(html_template=live.PANEL_TEMPLATES[kind], css_template=live.PANEL_CSS,
                   js_on_load=live.panel_script(kind, ids), elem_id=f"live-{kind}")


def build_edit_tab(steering: SteeringHandlers, defaults: PageState) -> dict[str, Any]:
    """The Edit tab: a face (seed or latent token), one slider per direction, its sweep."""
    directions = steering.directions
    with gr.Tab("Edit", id="edit", elem_id="tab-edit") as tab:
        gr.Markdown(f"Move a face along the model's own latent directions ({directions.method.upper()}: found "
                    "in its first layer's weights). Amounts are in standard deviations of the model's latents: "
                    "±3 spans nearly all the faces it draws.")
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                with gr.Row():
                    seed = gr.Number(value=defaults.edit_seed, label="seed", precision=0, elem_id="edit-seed")
                    truncation = gr.Slider(0.05, 1.5, value=defaults.edit_truncation, step=0.05, label="truncation",
                                           elem_id="edit-truncation")
                latent = gr.Textbox(defaults.edit_latent, label="or a latent token (replaces the seed)", max_lines=1,
                                    placeholder="z1.… from Your face, Interpolate, Arithmetic", elem_id="edit-latent")
                sliders = [gr.Slider(-MAX_AMOUNT, MAX_AMOUNT, value=0.0, step=0.1, label=directions.label(index),
                                     elem_id=f"direction-{index}") for index in range(steering.slider_count)]
                reset = gr.Button("Reset all to 0", size="sm", elem_id="edit-reset")
            with gr.Column(scale=1, min_width=260):
                live_panel("edit", {"seed": "edit-seed", "truncation": "edit-truncation", "latent": "edit-latent",
                                    "sliders": [f"direction-{index}" for index in range(steering.slider_count)]})
                face = gr.Image(label="edited face", type="filepath", format="png", interactive=False, height=288,
                                elem_id="edit-face", buttons=["download"])
                text = gr.Textbox(defaults.edit, label="the edit as text (press Enter to apply)", max_lines=1,
                                  placeholder="e.g. 0=2.5, 3=-1", elem_id="edit-text")
                token = gr.Textbox(label="latent token of the edited face", max_lines=1, buttons=["copy"],
                                   elem_id="edit-token")
                with gr.Row():
                    direction = gr.Dropdown([(directions.label(index), index) for index in range(directions.count)],
                                            value=defaults.sweep_direction, label="sweep a direction",
                                            elem_id="sweep-direction")
                    frames = gr.Slider(2, 30, value=9, step=1, label="frames", elem_id="sweep-frames")
                sweep = gr.Button("Sweep −3 … +3", elem_id="sweep")
                strip = gr.Image(label="sweep", type="filepath", format="png", interactive=False, elem_id="sweep-strip",
                                 buttons=["download", "fullscreen"])
                gif = gr.Image(label="sweep, animated", type="filepath", image_mode=None, interactive=False,
                               height=200, elem_id="sweep-gif")
                gif_download = gr.DownloadButton("Download sweep GIF", elem_id="sweep-gif-download")
    return dict(tab=tab, seed=seed, truncation=truncation, latent=latent, sliders=sliders, reset=reset, face=face,
                text=text, token=token, direction=direction, frames=frames, sweep=sweep, strip=strip, gif=gif,
                gif_download=gif_download)


def build_arithmetic_tab(defaults: PageState) -> dict[str, Any]:
    """The Arithmetic tab: three groups filled by clicking faces, A − B + C as in the DCGAN paper.

    Its gallery is drawn when the tab opens (not at start-up: the first paint stays light)."""
    with gr.Tab("Arithmetic", id="arithmetic", elem_id="tab-arithmetic") as tab:
        gr.Markdown("Face arithmetic as in the DCGAN paper: each group's latents are averaged, then **A − B + C**. "
                    "The result sits in the middle of 8 neighbours (its latent plus small noise). The default: "
                    "smiling women − neutral women + neutral men.")
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                group_a = gr.Textbox(defaults.group_a, label="group A (seeds or latent tokens)", elem_id="group-a")
                group_b = gr.Textbox(defaults.group_b, label="− group B", elem_id="group-b")
                group_c = gr.Textbox(defaults.group_c, label="+ group C", elem_id="group-c")
                noise = gr.Number(value=defaults.noise_seed, label="neighbours' noise seed", precision=0,
                                  elem_id="noise-seed")
                go = gr.Button("A − B + C", variant="primary", elem_id="arithmetic")
            with gr.Column(scale=2):
                figure = gr.Image(label="A − B + C", type="filepath", format="png", interactive=False,
                                  elem_id="arithmetic-figure", buttons=["download", "fullscreen"])
                token = gr.Textbox(label="latent token of the result", max_lines=1, buttons=["copy"],
                                   elem_id="arithmetic-token")
                to_edit = gr.Button("Edit the result", size="sm", elem_id="arithmetic-edit")
                figure_download = gr.DownloadButton("Download (PNG)", elem_id="arithmetic-download")
        with gr.Row():
            target = gr.Radio(["A", "B", "C"], value="A", label="a click adds the face to group",
                              elem_id="target-group")
            start = gr.Number(value=0, label="faces from seed", precision=0, elem_id="arithmetic-start")
            more = gr.Button("Show these faces", size="sm", elem_id="arithmetic-browse")
        gallery = gr.Gallery(label="click faces to fill the groups", format="png", columns=12, height="auto",
                             allow_preview=False, object_fit="contain", elem_id="arithmetic-gallery",
                             interactive=False)
        shown = gr.State([])  # the gallery's seeds, on the server: a click is mapped to its seed by index
    return dict(tab=tab, group_a=group_a, group_b=group_b, group_c=group_c, noise=noise, go=go, figure=figure,
                token=token, to_edit=to_edit, figure_download=figure_download, target=target, start=start, more=more,
                gallery=gallery, shown=shown)


def build_complete_tab(first_face: str, defaults: PageState) -> dict[str, Any]:
    """The Complete tab: a face (seed, latent token or photo), a mask (preset or brushed), the filled face."""
    with gr.Tab("Complete", id="complete", elem_id="tab-complete") as tab:
        gr.Markdown("Hide part of a face and let the model fill it in: it searches for the latent whose face "
                    "matches the visible pixels (a few seconds), then blends that face into the hole. Pick a "
                    f"preset or brush over the face. Photos: {photos.ACCEPTED}, at most "
                    f"{photos.MAX_BYTES // 2**20} MB, deleted as soon as they are read; nothing of them is kept.")
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                source = gr.Radio(list(COMPLETE_SOURCES), value="seed", label="face", elem_id="complete-source")
                seed = gr.Number(value=defaults.complete_seed, label="seed", precision=0, elem_id="complete-seed")
                latent = gr.Textbox(defaults.complete_latent, label="latent token", max_lines=1,
                                    elem_id="complete-latent")
                photo = gr.Image(label="or upload a photo", type="filepath", sources=["upload"], height=160,
                                 elem_id="complete-photo")
            with gr.Column(scale=1, min_width=280):
                presets = gr.Radio([*[(PRESET_LABELS[name], name) for name in PRESETS], ("brushed", "brushed")],
                                   value=defaults.mask if defaults.mask in PRESETS else "brushed", label="hide",
                                   elem_id="mask-preset")
                brush = gr.HTML(first_face, html_template=BRUSH_TEMPLATE, js_on_load=brush_script(PRESET_BOXES),
                                elem_id="brush")
                mask = gr.Textbox(defaults.mask, label="mask (a preset, or the brushed mask as text)", max_lines=1,
                                  elem_id="mask-spec")
                go = gr.Button("Complete", variant="primary", elem_id="complete")
            with gr.Column(scale=2, min_width=300):
                result = gr.HTML(elem_id="completion", js_on_load=None)
                summary = gr.Markdown(elem_id="completion-summary")
        crop = gr.State(None)  # the photo's 64×64 crop, in this session's memory only
    return dict(tab=tab, source=source, seed=seed, latent=latent, photo=photo, presets=presets, brush=brush,
                mask=mask, go=go, result=result, summary=summary, crop=crop)


def wire_steering(steering: SteeringHandlers, edit: dict, arithmetic: dict, complete: dict, *, tabs: Any,
                  remember: dict, model_events: dict, page_events: dict, ui_events: dict, mcp: bool) -> None:
    """The three tabs' events, and their API endpoints (also MCP tools, except complete_photo)."""
    handlers = {name: messages(getattr(steering, name)) for name in (
        "edit", "sweep", "arithmetic", "complete", "complete_photo", "edit_page", "edit_text_page", "sweep_page",
        "arithmetic_page", "arithmetic_gallery", "add_to_group", "complete_source", "complete_photo_upload",
        "complete_page")}
    source = [edit["seed"], edit["truncation"], edit["latent"]]
    edit_face = [edit["face"], edit["token"], edit["text"]]
    gr.on([slider.input for slider in edit["sliders"]] + [slider.release for slider in edit["sliders"]]
          + [edit["seed"].submit, edit["truncation"].release, edit["latent"].submit],
          handlers["edit_page"], [*source, *edit["sliders"]], edit_face, trigger_mode="always_last",
          **page_events).success(**remember)
    edit["text"].submit(handlers["edit_text_page"], [*source, edit["text"]], [*edit["sliders"], *edit_face],
                        **page_events).success(**remember)
    edit["reset"].click(lambda: [0.0] * len(edit["sliders"]), None, edit["sliders"], **ui_events).then(
        handlers["edit_page"], [*source, *edit["sliders"]], edit_face, **page_events).success(**remember)
    sweep_outputs = [edit["strip"], edit["gif"], edit["gif_download"]]
    gr.on([edit["sweep"].click, edit["direction"].input], handlers["sweep_page"],
          [*source, edit["text"], edit["direction"], edit["frames"]], sweep_outputs, **page_events).success(**remember)
    edit["tab"].select(handlers["edit_text_page"], [*source, edit["text"]], [*edit["sliders"], *edit_face],
                       **page_events)

    groups = [arithmetic["group_a"], arithmetic["group_b"], arithmetic["group_c"]]
    arithmetic_outputs = [arithmetic["figure"], arithmetic["token"], arithmetic["figure_download"]]
    gr.on([arithmetic["go"].click, arithmetic["noise"].submit] + [group.submit for group in groups],
          handlers["arithmetic_page"], [*groups, arithmetic["noise"]], arithmetic_outputs,
          **page_events).success(**remember)
    shown = arithmetic["shown"]
    arithmetic["tab"].select(handlers["arithmetic_page"], [*groups, arithmetic["noise"]], arithmetic_outputs,
                             **page_events).then(handlers["arithmetic_gallery"], arithmetic["start"],
                                                 [arithmetic["gallery"], shown], **page_events)
    gr.on([arithmetic["more"].click, arithmetic["start"].submit], handlers["arithmetic_gallery"], arithmetic["start"],
          [arithmetic["gallery"], shown], **page_events)
    arithmetic["gallery"].select(handlers["add_to_group"], [shown, arithmetic["target"], *groups], groups,
                                 **ui_events).success(**remember)
    arithmetic["to_edit"].click(messages(lambda token: (require_token(token, "compute A − B + C first"),
                                                        gr.Tabs(selected="edit"))),
                                arithmetic["token"], [edit["latent"], tabs], **ui_events).success(
        handlers["edit_text_page"], [*source, edit["text"]], [*edit["sliders"], *edit_face],
        **page_events).success(**remember)

    face_inputs = [complete["source"], complete["seed"], complete["latent"], complete["crop"]]
    show_face = dict(fn=lambda kind, seed, latent, crop: handlers["complete_source"](kind, seed, 1.0, latent, crop),
                     inputs=face_inputs, outputs=complete["brush"])
    gr.on([complete["source"].input, complete["seed"].submit, complete["latent"].submit], **show_face,
          **page_events).success(**remember)
    complete["photo"].upload(handlers["complete_photo_upload"], complete["photo"],
                             [complete["photo"], complete["crop"], complete["brush"], complete["source"]],
                             **page_events)
    complete["presets"].input(lambda choice: "" if choice == "brushed" else choice, complete["presets"],
                              complete["mask"], **ui_events)
    complete["mask"].change(lambda text: text if text in PRESETS else "brushed", complete["mask"],
                           complete["presets"], **ui_events)
    complete["go"].click(lambda kind, seed, latent, crop, mask: handlers["complete_page"](kind, seed, 1.0, latent,
                                                                                         crop, mask),
                         [*face_inputs, complete["mask"]], [complete["result"], complete["summary"]],
                         **page_events).success(**remember)
    steering_api(handlers, edit, model_events, mcp)


def steering_api(handlers: dict, edit: dict, model_events: dict, mcp: bool) -> None:
    """Hidden triggers for the API: typed inputs (an integer seed, text edits and masks) and plain outputs."""
    with gr.Row(visible=False):
        seed = gr.Number(precision=0, label="seed")
        truncation = gr.Number(value=1.0, label="truncation")
        latent, text, direction, expression, mask = (gr.Textbox(label=name) for name in (
            "latent", "edit", "direction", "expression", "mask"))
        frames = gr.Number(value=9, precision=0, label="frames")
        noise_seed = gr.Number(value=0, precision=0, label="noise_seed")
        photo = gr.Image(type="filepath", label="photo")
        face, strip, figure, completed = (gr.Image(type="filepath", format="png") for _ in range(4))
        gif = gr.Image(type="filepath", image_mode=None)
        token, summary = gr.Textbox(), gr.JSON()
        buttons = [gr.Button() for _ in range(5)]
    buttons[0].click(handlers["edit"], [seed, truncation, latent, text], [face, token], api_name="edit",
                     **model_events)
    buttons[1].click(handlers["sweep"], [seed, truncation, latent, text, direction, frames], [strip, gif],
                     api_name="sweep", **model_events)
    buttons[2].click(handlers["arithmetic"], [expression, truncation, noise_seed], [figure, token],
                     api_name="arithmetic", **model_events)
    buttons[3].click(handlers["complete"], [seed, truncation, latent, mask], [completed, summary],
                     api_name="complete", **model_events)
    buttons[4].click(handlers["complete_photo"], [photo, mask], [completed, summary], api_name="complete_photo",
                     **{**model_events, "api_visibility": "undocumented" if mcp else "public"})


def require_token(token: object, message: str) -> str:
    if not isinstance(token, str) or not token.strip():
        raise ValueError(message)
    return token



def edit_start(chosen: tuple[int, float] | None) -> tuple[int, float, str, str]:
    """A clicked gallery tile as the Edit tab's start: its seed and truncation, no token, no edit yet."""
    if chosen is None:
        raise ValueError("click a face first")
    return chosen[0], chosen[1], "", ""


def link_steering(loaded: Any, steering: SteeringHandlers, edit: dict, arithmetic: dict, complete: dict,
                  first_tab: Any, page_events: dict) -> Any:
    """A link to the Edit, Arithmetic or Complete tab draws its result at once (one event for the three:
    every queued step of the first paint delays it)."""
    edit_in = [edit["seed"], edit["truncation"], edit["latent"], edit["text"]]
    edit_out = [*edit["sliders"], edit["face"], edit["token"], edit["text"]]
    groups_in = [arithmetic["group_a"], arithmetic["group_b"], arithmetic["group_c"], arithmetic["noise"]]
    arithmetic_out = [arithmetic["figure"], arithmetic["token"], arithmetic["figure_download"],
                      arithmetic["gallery"], arithmetic["shown"]]
    complete_in = [complete["seed"], complete["latent"], complete["mask"]]
    complete_out = [complete["source"], complete["brush"], complete["presets"], complete["result"], complete["summary"]]

    def draw(first: str, *values: Any) -> tuple:
        skipped = {"edit": [gr.skip()] * len(edit_out), "arithmetic": [gr.skip()] * len(arithmetic_out),
                   "complete": [gr.skip()] * len(complete_out)}
        if first == "edit":
            skipped["edit"] = list(steering.edit_text_page(*values[:4]))
        elif first == "arithmetic":
            skipped["arithmetic"] = [*steering.arithmetic_page(*values[4:8]), *steering.arithmetic_gallery(0)]
        elif first == "complete":
            seed, latent, mask = values[8:]
            kind = "latent token" if latent else "seed"
            face = steering.complete_source(kind, seed, 1.0, latent, None)
            result, summary = steering.complete_page(kind, seed, 1.0, latent, None, mask)
            skipped["complete"] = [kind, face, mask if mask in PRESETS else "brushed", result, summary]
        return (*skipped["edit"], *skipped["arithmetic"], *skipped["complete"])

    return loaded.then(messages(draw), [first_tab, *edit_in, *groups_in, *complete_in],
                       [*edit_out, *arithmetic_out, *complete_out], **page_events)


def build_demo(server: ModelServer, output_dir: str | os.PathLike | None = None, *, mcp: bool = False,
               uploads: UploadLedger | None = None) -> gr.Blocks:
    """The Blocks app for ``server``, queue configured; results are written to ``output_dir``;
    ``uploads``: the ledger the route guard records uploads in (the same one goes to launch_options).

    With ``mcp``, ``/project`` and ``/complete_photo`` are left out of the API page and so out of
    the MCP tools: Gradio's MCP layer turns a tool's file argument into a file of its own in the
    cache before the call, a copy of the photo that the handler never sees and cannot delete.
    gradio_client still calls them (``api_visibility="undocumented"``).
    """
    demo_handlers = Demo(server, output_dir or tempfile.mkdtemp(prefix="dcgan-app-"), uploads or UploadLedger())
    handlers = {name: messages(getattr(demo_handlers, name)) for name in (
        "generate", "interpolate", "project", "training_grid", "training_gif", "model_info", "generate_page",
        "project_page", "load_page")}
    history = server.history
    defaults = PageState()
    first_tiles, first_seeds, first_grid = demo_handlers.generate_page(defaults.seed, defaults.count,
                                                                       defaults.truncation)
    first_strip, first_gif = demo_handlers.interpolate(
        defaults.seed_a, defaults.seed_b, defaults.more_seeds, defaults.frames, defaults.method, defaults.closed,
        defaults.walk_truncation)
    steering = SteeringHandlers(server, demo_handlers.files, demo_handlers.uploads)
    first_brush_face = steering.complete_source("seed", defaults.complete_seed, 1.0, "", None)

    # preprocess=False: handlers get the raw values and dcgan_hf.serving checks them all
    # (gr.Slider's own range check crashes on a non-number with an opaque error; an image
    # input would be decoded by Gradio before our size and dimension checks).
    model_events = dict(concurrency_limit=CONCURRENCY_LIMIT, concurrency_id="model", preprocess=False)
    page_events = dict(model_events, api_visibility="private")
    ui_events = dict(concurrency_limit=UI_CONCURRENCY, concurrency_id="ui", api_visibility="private")
    # browser-only events (no Python function) are marked queued too, so /gradio_api/run/* refuses
    # them with a message instead of answering {"error": null}
    js_events = dict(ui_events, queue=True)

    with gr.Blocks(title="DCGAN 64×64 faces", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# DCGAN 64×64 faces\nEvery seed is one face, the same on every machine. "
                    "Click a face to walk from it; upload a photo to find yourself in latent space.")
        with gr.Accordion("Model", open=False):
            gr.Markdown(server.status.markdown(), elem_id="model-info")

        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Generate", id="generate", elem_id="tab-generate") as generate_tab:
                with gr.Row():
                    with gr.Column(scale=1, min_width=240):
                        seed = gr.Number(value=42, label="seed", elem_id="seed", precision=0)
                        dice = gr.Button("Random seed", size="sm", elem_id="random-seed")
                        count = gr.Slider(1, MAX_IMAGES, value=16, step=1, label="number of images",
                                          elem_id="count")
                        truncation = gr.Slider(0.05, 1.5, value=1.0, step=0.05,
                                               label="truncation (scale of z, 1.0 = off)", elem_id="truncation")
                        go = gr.Button("Generate", variant="primary", elem_id="generate")
                        grid_download = gr.DownloadButton("Download grid (PNG)", value=first_grid,
                                                          elem_id="grid-download")
                        walk_preview = gr.Image(  # the current walk, so the first view moves too
                            first_gif, label="latent walk (see Interpolate)", type="filepath", image_mode=None,
                            interactive=False, height=180, elem_id="walk-preview", buttons=[])
                    with gr.Column(scale=3):
                        gallery = gr.Gallery(first_tiles, label="faces (click one)", format="png", columns=8,
                                             height="auto",
                                             allow_preview=False, object_fit="contain", elem_id="gallery",
                                             interactive=False)
                        with gr.Row(visible=False, elem_id="tile-actions") as tile_actions:
                            picked_label = gr.Markdown(elem_id="picked")
                            use_a = gr.Button("Use as seed A", size="sm", elem_id="use-a")
                            use_b = gr.Button("Use as seed B", size="sm", elem_id="use-b")
                            show_larger = gr.Button("Show larger", size="sm", elem_id="show-larger")
                            edit_tile = gr.Button("Edit this face", size="sm", elem_id="edit-tile")
                        larger = gr.Image(label="larger", type="filepath", format="png", interactive=False,
                                          visible=False, height=384, elem_id="larger", buttons=["download"])
                shown_seeds = gr.State(first_seeds)
                picked = gr.State(None)  # (seed, truncation) of the clicked tile
                generate_inputs = [seed, count, truncation]
                generate_examples = gr.Dataset(components=generate_inputs,
                                               samples=[list(row) for row in GENERATE_EXAMPLES],
                                               label="examples", type="values", elem_id="generate-examples")

            with gr.Tab("Interpolate", id="interpolate", elem_id="tab-interpolate") as interpolate_tab:
                with gr.Row():
                    with gr.Column(scale=1, min_width=240):
                        with gr.Row():
                            seed_a = gr.Number(value=1, label="seed A", elem_id="seed-a", precision=0)
                            seed_b = gr.Number(value=2, label="seed B", elem_id="seed-b", precision=0)
                        more = gr.Textbox("", label="more seeds (optional)", placeholder="e.g. 7, 99",
                                          elem_id="more-seeds")
                        closed = gr.Checkbox(label="closed loop (back to the start)", elem_id="closed")
                        frames = gr.Slider(MIN_FRAMES, MAX_FRAMES, value=24, step=1, label="frames",
                                           elem_id="frames")
                        method = gr.Radio(list(METHODS), value="slerp", label="path", elem_id="method")
                        walk_truncation = gr.Slider(0.05, 1.5, value=1.0, step=0.05, label="truncation",
                                                    elem_id="walk-truncation")
                        with gr.Accordion("Start or end at a projected face", open=False,
                                          elem_id="face-ends") as face_ends:
                            start_latent = gr.Textbox("", label="start latent (replaces seed A)", max_lines=1,
                                                      placeholder="a token from the Your face tab",
                                                      elem_id="start-latent")
                            end_latent = gr.Textbox("", label="end latent (replaces seed B)", max_lines=1,
                                                    elem_id="end-latent")
                        walk = gr.Button("Interpolate", variant="primary", elem_id="interpolate")
                    with gr.Column(scale=2):
                        live_panel("walk", {  # live mode (issue 18): play and scrub the walk in the browser
                            "seed_a": "seed-a", "seed_b": "seed-b", "more_seeds": "more-seeds", "frames": "frames",
                            "method": "method", "closed": "closed", "truncation": "walk-truncation",
                            "start_latent": "start-latent", "end_latent": "end-latent",
                            "frame_number": "edit-frame-number", "frame_ms": GIF_FRAME_MS})
                        animation = gr.Image(  # image_mode=None: the GIF (palette mode) passes on untouched
                            first_gif, label="animation", type="filepath", image_mode=None, interactive=False,
                            elem_id="gif", height=256,
                        )
                        strip = gr.Image(first_strip, label="frames", type="filepath", image_mode=None, format="png",
                                         interactive=False, elem_id="strip", buttons=["download", "fullscreen"])
                        gif_download = gr.DownloadButton("Download GIF", value=first_gif, elem_id="gif-download")
                        with gr.Row():
                            edit_frame = gr.Number(value=1, label="frame", precision=0, minimum=1,
                                                   elem_id="edit-frame-number")
                            edit_walk = gr.Button("Edit this frame", size="sm", elem_id="edit-frame")
                walk_inputs = [seed_a, seed_b, more, frames, method, closed, walk_truncation, start_latent,
                               end_latent]
                walk_examples = gr.Dataset(components=walk_inputs[:7],
                                           samples=[list(row) for row in INTERPOLATE_EXAMPLES],
                                           label="examples", type="values", elem_id="walk-examples")

            with gr.Tab("Your face", id="project", elem_id="tab-project") as project_tab:
                gr.Markdown(
                    f"Upload a photo of a face ({photos.ACCEPTED}, at most {photos.MAX_BYTES // 2**20} MB). "
                    "It is cropped to the centre and shrunk to 64×64 like the training faces, then the "
                    "latent whose face looks most like it is searched for (a few seconds). "
                    "The photo is deleted as soon as it has been read; nothing of it is kept."
                )
                with gr.Row():
                    photo = gr.Image(label="upload a photo", type="filepath", sources=["upload"], height=256,
                                     elem_id="photo", scale=1)
                    crop = gr.HTML(elem_id="photo-crop", js_on_load=None, scale=2)
                    reconstruction = gr.Image(label="its face in latent space", type="filepath", format="png",
                                              interactive=False, height=256, elem_id="reconstruction", scale=1)
                loss = gr.Markdown(elem_id="projection-loss")
                token = gr.Textbox(label="latent token (for /interpolate and links)", max_lines=1,
                                   buttons=["copy"], elem_id="token")
                with gr.Row():
                    to_seed = gr.Number(value=42, label="walk from my face to seed", precision=0,
                                        elem_id="to-seed")
                    walk_from_face = gr.Button("Walk from my face", variant="primary", elem_id="walk-from-face")
                    edit_face = gr.Button("Edit my face", elem_id="edit-my-face")

            edit = build_edit_tab(steering, defaults)
            arithmetic = build_arithmetic_tab(defaults)
            complete = build_complete_tab(first_brush_face, defaults)

            if history is not None:
                with gr.Tab("Training", id="training", elem_id="tab-training") as training_tab:
                    gr.Markdown(f"The same seeds at each epoch of the run ({history.where}): "
                                f"{len(history.revisions)} revisions, loaded when asked for and at most "
                                f"{history.cache.capacity} kept in memory.")
                    with gr.Row():
                        with gr.Column(scale=1, min_width=240):
                            epoch = gr.Slider(history.epochs[0], history.epochs[-1], value=history.epochs[-1],
                                              step=1, label="epoch", elem_id="epoch")
                            training_seeds = gr.Textbox(value="0-15", label="seeds", elem_id="training-seeds")
                            training_grid = gr.Image(label="at this epoch", type="filepath", format="png",
                                                     interactive=False, elem_id="training-grid", height=320)
                            which = gr.Markdown(elem_id="training-revision")
                        with gr.Column(scale=1, min_width=240):
                            gif_seed = gr.Number(value=0, label="follow one seed", precision=0, elem_id="gif-seed")
                            training_gif = gr.Image(label="across all epochs", type="filepath", image_mode=None,
                                                    interactive=False, elem_id="training-gif", height=256)
                            training_strip = gr.Image(label="epochs, oldest first", type="filepath",
                                                      image_mode=None, format="png", interactive=False,
                                                      elem_id="training-strip")
                            epochs_shown = gr.Markdown(elem_id="training-epochs")
                    training_inputs = [epoch, training_seeds, truncation]
                    gif_inputs = [gif_seed, truncation]

        # -- the public API: hidden triggers, so the page's richer outputs don't change it -----
        with gr.Row(visible=False):
            api_grid = gr.Image(type="filepath", format="png")
            api_generate = gr.Button()
            api_project = gr.Button()
            api_reconstruction = gr.Image(type="filepath", format="png")
            api_token = gr.Textbox()
            api_summary = gr.JSON()
        api_generate.click(handlers["generate"], generate_inputs, api_grid, api_name="generate", **model_events)
        api_project.click(handlers["project"], photo, [api_reconstruction, api_token, api_summary],
                          api_name="project", **{**model_events, "api_visibility": "undocumented" if mcp else "public"})
        gr.api(handlers["model_info"], api_name="model_info")

        # -- page state in the URL -------------------------------------------------------------
        state_components = [seed, count, truncation, seed_a, seed_b, more, frames, method, closed, walk_truncation,
                            start_latent, end_latent]
        if history is not None:
            state_components += [epoch, training_seeds, gif_seed]
        state_components += [edit["seed"], edit["truncation"], edit["latent"], edit["text"], edit["direction"],
                             arithmetic["group_a"], arithmetic["group_b"], arithmetic["group_c"], arithmetic["noise"],
                             complete["seed"], complete["latent"], complete["mask"]]
        keys_by_field = {name: key for key, name in KEYS.items()}
        state_keys = [keys_by_field[name] for name in demo_handlers.state_fields()]
        remember = dict(fn=None, inputs=state_components, outputs=None, js=url_script(state_keys), **js_events)

        # -- Generate ------------------------------------------------------------------------------
        page_grid = [gallery, shown_seeds, grid_download]
        for trigger in (go.click, seed.submit):
            trigger(handlers["generate_page"], generate_inputs, page_grid, **page_events).success(**remember)
        dice.click(random_seed, None, seed, **ui_events).then(
            handlers["generate_page"], generate_inputs, page_grid, **page_events).success(**remember)
        gr.on([count.release, truncation.release], handlers["generate_page"], generate_inputs, page_grid,
              **page_events).success(**remember)

        def pick(shown: list, event: gr.SelectData) -> tuple:
            """A tile was clicked: its seed from the server's own list (only the index is used)."""
            index = event.index if isinstance(event.index, int) and not isinstance(event.index, bool) else -1
            if not 0 <= index < len(shown):
                return None, gr.Row(visible=False), "", gr.Image(visible=False)
            seed_value, scale = shown[index]
            return (seed_value, scale), gr.Row(visible=True), f"**seed {seed_value}**", gr.Image(visible=False)

        gallery.select(messages(pick), shown_seeds, [picked, tile_actions, picked_label, larger], **ui_events)

        def use_as(letter: str) -> Callable[[tuple[int, float] | None], int]:
            def use(chosen: tuple[int, float] | None) -> int:
                if chosen is None:
                    raise gr.Error("click a face first")
                gr.Info(f"seed {letter} = {chosen[0]}")
                return chosen[0]
            return use

        use_a.click(messages(use_as("A")), picked, seed_a, **ui_events).then(**remember)
        use_b.click(messages(use_as("B")), picked, seed_b, **ui_events).then(**remember)
        show_larger.click(messages(demo_handlers.larger), picked, larger, **page_events)
        generate_examples.click(lambda row: row, generate_examples, generate_inputs, **ui_events).then(
            handlers["generate_page"], generate_inputs, page_grid, **page_events).success(**remember)

        # -- Interpolate -------------------------------------------------------------------------
        walk_outputs = [strip, animation]
        walk.click(handlers["interpolate"], walk_inputs, walk_outputs, api_name="interpolate",
                   **model_events).success(**remember)
        animation.change(lambda path: (path, path), animation, [gif_download, walk_preview], **ui_events)
        walk_examples.click(lambda row: [*row, "", ""], walk_examples, walk_inputs, **ui_events).then(
            handlers["interpolate"], walk_inputs, walk_outputs, **page_events).success(**remember)

        # -- Your face -----------------------------------------------------------------------------
        photo.upload(handlers["project_page"], photo, [photo, crop, reconstruction, loss, token], **page_events)

        def start_walk_from_face(face: str, seed_number: float) -> tuple:
            if not face:
                raise gr.Error("upload a photo first: its latent becomes the walk's start")
            return (face, check_seed_input(seed_number, "seed"), gr.Tabs(selected="interpolate"),
                    gr.Accordion(open=True))  # shows that the walk starts at the face, not at seed A

        walk_from_face.click(messages(start_walk_from_face), [token, to_seed],
                             [start_latent, seed_b, tabs, face_ends],
                             **ui_events).success(
            handlers["interpolate"], walk_inputs, walk_outputs, **page_events).success(**remember)

        # -- Training ------------------------------------------------------------------------------
        if history is not None:
            show_epoch = dict(fn=handlers["training_grid"], inputs=training_inputs, outputs=[training_grid, which])
            show_gif = dict(fn=handlers["training_gif"], inputs=gif_inputs,
                            outputs=[training_gif, training_strip, epochs_shown])
            # input: typing + Enter, and live while dragging (always_last drops the backlog); release: the drop
            gr.on([epoch.input, epoch.release, training_seeds.submit], api_name="training_grid", **show_epoch,
                  trigger_mode="always_last", **model_events).success(**remember)
            gif_seed.submit(api_name="training_gif", **show_gif, **model_events).success(**remember)
            training_tab.select(**show_epoch, **page_events).then(**show_gif, **page_events)

        # -- Edit, Arithmetic, Complete, and the ways into Edit from the other tabs ----------------
        wire_steering(steering, edit, arithmetic, complete, tabs=tabs, remember=remember, model_events=model_events,
                      page_events=page_events, ui_events=ui_events, mcp=mcp)
        open_edit = dict(fn=messages(steering.edit_text_page), inputs=[edit["seed"], edit["truncation"],
                                                                        edit["latent"], edit["text"]],
                         outputs=[*edit["sliders"], edit["face"], edit["token"], edit["text"]], **page_events)
        edit_tile.click(messages(lambda chosen: (*edit_start(chosen), gr.Tabs(selected="edit"))), picked,
                        [edit["seed"], edit["truncation"], edit["latent"], edit["text"], tabs],
                        **ui_events).success(**open_edit).success(**remember)
        edit_walk.click(messages(steering.edit_from_walk), [*walk_inputs, edit_frame], [edit["latent"], tabs],
                        **page_events).success(**open_edit).success(**remember)
        edit_face.click(messages(lambda face: (require_token(face, "upload a photo first: its latent is edited"),
                                               gr.Tabs(selected="edit"))), token, [edit["latent"], tabs],
                        **ui_events).success(**open_edit).success(**remember)

        # -- tabs in the URL, first paint ----------------------------------------------------------
        tab_list = [(generate_tab, "generate"), (interpolate_tab, "interpolate"), (project_tab, "project"),
                    (edit["tab"], "edit"), (arithmetic["tab"], "arithmetic"), (complete["tab"], "complete")]
        if history is not None:
            tab_list.append((training_tab, "training"))
        for tab, name in tab_list:
            tab.select(None, None, None, js=tab_script(name), **js_events)
        first_tab = gr.State("")
        loaded = demo.load(handlers["load_page"], None, [tabs, first_tab, *state_components, *page_grid],
                           **page_events)
        loaded = loaded.then(when_linked(handlers["interpolate"]), [first_tab, *walk_inputs], walk_outputs,
                             **page_events)
        if history is not None:  # a link to the Training tab draws it at once; otherwise its select does
            loaded = loaded.then(when_linked(handlers["training_grid"], "training"), [first_tab, *training_inputs],
                                 [training_grid, which], **page_events).then(
                when_linked(handlers["training_gif"], "training"), [first_tab, *gif_inputs],
                [training_gif, training_strip, epochs_shown], **page_events)
        loaded = link_steering(loaded, steering, edit, arithmetic, complete, first_tab, page_events)
        loaded.then(None, None, None, js=LOADED_SCRIPT, **js_events)
    return demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=MAX_QUEUE, api_open=False)


def default_host() -> str:
    """127.0.0.1 locally; what the Space asks for (or all interfaces) on a Space."""
    if os.environ.get("GRADIO_SERVER_NAME"):
        return os.environ["GRADIO_SERVER_NAME"]
    return "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="DCGAN 64×64 demo (Gradio)")
    parser.add_argument(
        "--model", default=os.environ.get("DCGAN_MODEL") or str(BUNDLED_MODEL),
        help="Hub repo id with optional @revision, a model folder or a train.py run folder "
             "(env DCGAN_MODEL; default: bundled model)",
    )
    parser.add_argument(
        "--fallback-model", default=os.environ.get("DCGAN_FALLBACK_MODEL") or str(BUNDLED_MODEL),
        help="served when --model cannot be loaded (env DCGAN_FALLBACK_MODEL; default: bundled model)",
    )
    parser.add_argument("--device", default=os.environ.get("DCGAN_DEVICE", "auto"), help="auto, cpu or cuda[:N]")
    parser.add_argument("--host", default=default_host(), help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--live-runtime", default=os.environ.get(live.RUNTIME_ENV) or "auto",
                        help="where pages load ONNX Runtime Web for live mode: auto (the npm copy in web/ when "
                             "installed, else the CDN), cdn, off, or a folder with the files "
                             f"(env {live.RUNTIME_ENV})")
    parser.add_argument("--mcp", action="store_true", default=env_flag("DCGAN_MCP"),
                        help="also serve the tools over MCP at /gradio_api/mcp/ "
                             "(env DCGAN_MCP=1; needs the mcp package)")
    return parser.parse_args(argv)


def stop_on_signals() -> None:
    """SIGTERM (docker stop, a Space restart, kill) shuts down the way Ctrl-C does: Gradio deletes
    the files it cached and the output folder's ``with`` block removes the folder.

    SIGINT is set explicitly too: a process started in the background by a script (``cmd &``,
    ``nohup``) inherits SIGINT as *ignored*, and Python then never raises KeyboardInterrupt, so
    ``kill -INT`` would leave the server running with its files behind.
    """

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def launch_options(demo: gr.Blocks, mcp: bool, settings: GuardSettings, uploads: UploadLedger,
                   live_service: live.LiveService | None = None) -> dict[str, Any]:
    """``launch()`` settings that are part of the hardening, not the look, and live mode's GET-only
    routes (behind the guard: their requests are bounded like every other route's)."""
    guard = Middleware(RouteGuard, settings=settings, shapes=ApiShapes.of(demo), ledger=uploads)
    live_routes = [Middleware(live.LiveRoutes, service=live_service)] if live_service is not None else []
    return dict(
        max_file_size=photos.MAX_BYTES,  # every upload route; photos are the only uploads
        app_kwargs={"middleware": [guard, *live_routes]},
        # Gradio's run history would keep each public call's inputs (a /project photo among them)
        # in the browser or, once a user connects one, in a Hub bucket: photos are never kept
        run_history=False,
        mcp_server=mcp,
        show_error=False,
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.mcp and importlib.util.find_spec("mcp") is None:
        raise SystemExit("app.py: --mcp (DCGAN_MCP=1) needs the mcp package: pip install 'mcp>=1.21,<2' "
                         "(or pip install -e .[mcp])")
    try:
        settings = GuardSettings.from_env()
    except ValueError as error:
        raise SystemExit(f"app.py: {error}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes
    stop_on_signals()
    try:
        server = ModelServer.start(args.model, fallback=args.fallback_model, device=args.device)
    except ModelLoadError as error:
        hint = "Give a model with --model FOLDER or --model user/repo[@revision]."
        raise SystemExit(f"app.py: {error}\n{hint}") from None
    except ValueError as error:  # a bad --device or model spec
        raise SystemExit(f"app.py: {error}") from None
    demo = None
    try:
        with tempfile.TemporaryDirectory(prefix="dcgan-app-") as output_dir:
            uploads = UploadLedger(settings.uploads)
            demo = build_demo(server, output_dir, mcp=args.mcp, uploads=uploads)
            live_service = live.LiveService.start(server, args.live_runtime)  # exports the model for browsers
            demo.launch(server_name=args.host, server_port=args.port, theme=gr.themes.Soft(), css=CSS,
                        **launch_options(demo, args.mcp, settings, uploads, live_service))
    except KeyboardInterrupt:
        pass  # SIGTERM during start-up: the with block has cleaned up already
    finally:
        server.close()
        if demo is not None:
            forget_cached_files(demo)


def forget_cached_files(demo: gr.Blocks) -> None:
    """What Gradio's own shutdown leaves in its cache: the start-up values it keeps on purpose
    (the pre-rendered first paint) and the per-file folders of everything it deleted."""
    cache = gradio_cache_dir()
    files = {Path(path) for block in demo.blocks.values() for path in getattr(block, "keep_in_cache", ())}
    files |= {Path(path) for paths in demo.temp_file_sets for path in paths}
    for path in files:
        if not gradio_utils.is_in_or_equal(path, cache):
            continue
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass  # not empty: another file (or another app) still uses that folder


if __name__ == "__main__":
    main()

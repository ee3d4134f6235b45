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
import signal
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

try:  # ZeroGPU Spaces: `spaces` must be imported before torch initialises CUDA
    import spaces
except ImportError:
    spaces = None

import gradio as gr
from gradio import utils as gradio_utils
from starlette.middleware import Middleware

from dcgan_hf import photos
from dcgan_hf.api_calls import ApiShapes
from dcgan_hf.hub import BUNDLED_MODEL
from dcgan_hf.models import ModelLoadError
from dcgan_hf.page_state import KEYS, PageState, parse_query, query_defaults
from dcgan_hf.serving import (
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
from dcgan_hf.uploads import UploadLedger, discard

T = TypeVar("T")
logger = logging.getLogger("app")

CONCURRENCY_LIMIT = 4  # requests in flight at once; they share one inference worker
MAX_QUEUE = 64  # waiting requests beyond this are turned away with "queue full"
UI_CONCURRENCY = 8  # page-only events (tile clicks, tab switches): no model work
# spaces.GPU durations (s), sized from each call's worst case measured on the 2-vCPU CPU box
# (bench/RESULTS.md §9: 0.2 / 0.65 / 3.1 / 2.9 s), ×3 and at least 10 s for the GPU's
# start-up in a fresh ZeroGPU process; the Training GIF may first download up to 60 revisions.
# ZeroGPU schedules short durations first, so these stay as small as is safe.
GPU_SECONDS = {"generate": 10, "interpolate": 10, "project": 15, "training": 60}
CSS = """
#gif img, #walk-preview img, #larger img, #reconstruction img, #training-grid img, #training-gif img
  { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
#gallery img { image-rendering: pixelated; }
#strip img, #training-strip img { width: 100%; height: auto; image-rendering: pixelated; }
.photo-pair { display: flex; gap: 12px; align-items: flex-end; }
.photo-pair figure { margin: 0; }
.photo-preview img { max-width: 256px; max-height: 256px; }
.photo-crop img { width: 192px; aspect-ratio: 1; image-rendering: pixelated; }
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
        return {**self.server.status.as_dict(), "requests_running": gauge.running,
                "peak_requests_running": gauge.peak}

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
        }

    def state_fields(self) -> list[str]:
        fields = ["seed", "count", "truncation", "seed_a", "seed_b", "more_seeds", "frames", "method", "closed",
                  "walk_truncation", "start_latent", "end_latent"]
        if self.server.history is not None:
            fields += ["epoch", "training_seeds", "gif_seed"]
        return fields

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


def build_demo(server: ModelServer, output_dir: str | os.PathLike | None = None, *, mcp: bool = False,
               uploads: UploadLedger | None = None) -> gr.Blocks:
    """The Blocks app for ``server``, queue configured; results are written to ``output_dir``;
    ``uploads``: the ledger the route guard records uploads in (the same one goes to launch_options).

    With ``mcp``, ``/project`` is left out of the API page and so out of the MCP tools: Gradio's
    MCP layer turns a tool's file argument into a file of its own in the cache before the call,
    a copy of the photo that the handler never sees and cannot delete. gradio_client still
    calls it (``api_visibility="undocumented"``).
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
                        animation = gr.Image(  # image_mode=None: the GIF (palette mode) passes on untouched
                            first_gif, label="animation", type="filepath", image_mode=None, interactive=False,
                            elem_id="gif", height=256,
                        )
                        strip = gr.Image(first_strip, label="frames", type="filepath", image_mode=None, format="png",
                                         interactive=False, elem_id="strip", buttons=["download", "fullscreen"])
                        gif_download = gr.DownloadButton("Download GIF", value=first_gif, elem_id="gif-download")
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

        # -- tabs in the URL, first paint ----------------------------------------------------------
        tab_list = [(generate_tab, "generate"), (interpolate_tab, "interpolate"), (project_tab, "project")]
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


def launch_options(demo: gr.Blocks, mcp: bool, settings: GuardSettings, uploads: UploadLedger) -> dict[str, Any]:
    """``launch()`` settings that are part of the hardening, not the look."""
    guard = Middleware(RouteGuard, settings=settings, shapes=ApiShapes.of(demo), ledger=uploads)
    return dict(
        max_file_size=photos.MAX_BYTES,  # every upload route; photos are the only uploads
        app_kwargs={"middleware": [guard]},
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
            demo.launch(server_name=args.host, server_port=args.port, theme=gr.themes.Soft(), css=CSS,
                        **launch_options(demo, args.mcp, settings, uploads))
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

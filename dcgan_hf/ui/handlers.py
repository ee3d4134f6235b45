"""The Generate, Interpolate, Your face and Training tabs' handlers: API endpoints (also MCP
tools) and the page's own. Every value is checked by dcgan_hf.serving, which also runs the model.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import gradio as gr

from .. import photos
from ..serving.outputs import OutputFolder, grid_digest, tile_name
from ..serving.page_checks import query_checks
from ..serving import page_state
from ..serving.page_state import KEYS, PageState, parse_query
from ..serving.requests import (
    GenerateRequest,
    InterpolateRequest,
    check_seed_input,
    check_truncation,
    check_whole_number,
    parse_seed_list,
)
from ..serving.server import ModelServer
from ..serving.uploads import UploadLedger, claimed_upload, discard

from .common import data_uri, gpu_durations, on_gpu


class Demo:
    """The handlers: each validates with dcgan_hf.serving, runs the model there, writes results."""

    def __init__(self, server: ModelServer, output_dir: str | os.PathLike, uploads: UploadLedger) -> None:
        self.server = server
        self.files = OutputFolder(output_dir)
        self.uploads = uploads  # the photos the upload route stored: only these are read and deleted
        self.nz = server.generator.nz
        seconds = gpu_durations(server)
        self.render_grid = on_gpu(server.generate, seconds["generate"])
        self.render_path = on_gpu(server.interpolate, seconds["interpolate"])
        self.render_projection = on_gpu(server.project, seconds["project"])
        self.render_epoch = on_gpu(server.training_grid, seconds["training_grid"])
        self.render_epochs = on_gpu(server.training_walk, seconds["training_walk"])

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
            bare = PageState()  # the grid a bare link shows
            state = PageState(**{**state.as_dict(), "seed": bare.seed, "count": bare.count,
                                 "truncation": bare.truncation})
            tiles, seeds, grid = self.generate_page(state.seed, state.count, state.truncation)
        if self.server.history is not None and state.epoch == 0:  # 0 in a link: the newest epoch
            state = PageState(**{**state.as_dict(), "epoch": self.server.history.epochs[-1]})
        return (gr.Tabs(selected=state.tab), state.tab, *[getattr(state, name) for name in self.state_fields()],
                tiles, seeds, grid)

    def query_checks(self) -> dict[str, Callable[[Any], Any]]:
        """The form's own validators, applied to a link's values (dcgan_hf.serving.page_checks)."""
        history = self.server.history
        return query_checks(nz=self.nz, directions=self.server.directions,
                            epochs=None if history is None else history.epochs)

    def state_fields(self) -> list[str]:
        """The PageState fields this page keeps in its URL (the Training tab's only when it has one)."""
        return page_state.state_fields(training=self.server.history is not None)

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

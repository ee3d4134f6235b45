"""The page: one small builder per tab, then the wiring of their events, the public API, the
page's state in its URL and the first paint.

Every builder runs inside ``gr.Blocks`` (Gradio's context stack places its components) and
puts what later steps need into :attr:`Page.parts`; defaults come from :class:`PageState`, so a
bare link and the form agree, and the URL carries :func:`~dcgan_hf.serving.page_state.state_fields`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import gradio as gr

from .. import photos
from ..serving.page_state import KEYS, PageState
from ..serving.requests import MAX_FRAMES, MAX_IMAGES, METHODS, MIN_FRAMES, check_seed_input, random_seed
from ..serving.server import GIF_FRAME_MS, ModelServer
from ..serving.uploads import UploadLedger
from .common import (
    CONCURRENCY_LIMIT,
    GENERATE_EXAMPLES,
    INTERPOLATE_EXAMPLES,
    LOADED_SCRIPT,
    MAX_QUEUE,
    UI_CONCURRENCY,
    messages,
    tab_script,
    url_script,
    when_linked,
)
from .handlers import Demo
from .steering_handlers import SteeringHandlers
from .steering_tabs import build_arithmetic_tab, build_complete_tab, build_edit_tab, live_panel
from .steering_wiring import edit_start, link_steering, require_token, wire_steering

HANDLERS = ("generate", "interpolate", "project", "training_grid", "training_gif", "model_info", "generate_page",
            "project_page", "load_page")


@dataclass
class Page:
    """What the builders share: the handlers, the defaults and first paint, event settings, components."""

    server: ModelServer
    demo: Demo
    steering: SteeringHandlers
    mcp: bool
    defaults: PageState = field(default_factory=PageState)
    parts: dict[str, Any] = field(default_factory=dict)  # components by name, and each steering tab's dict
    first: dict[str, Any] = field(default_factory=dict)  # the first paint's results, rendered at start-up

    def __post_init__(self) -> None:
        self.handlers = {name: messages(getattr(self.demo, name)) for name in HANDLERS}
        # preprocess=False: handlers get the raw values and dcgan_hf.serving checks them all
        # (gr.Slider's own range check crashes on a non-number with an opaque error; an image
        # input would be decoded by Gradio before our size and dimension checks).
        self.model_events = dict(concurrency_limit=CONCURRENCY_LIMIT, concurrency_id="model", preprocess=False)
        self.page_events = dict(self.model_events, api_visibility="private")
        self.ui_events = dict(concurrency_limit=UI_CONCURRENCY, concurrency_id="ui", api_visibility="private")
        # browser-only events (no Python function) are marked queued too, so /gradio_api/run/* refuses
        # them with a message instead of answering {"error": null}
        self.js_events = dict(self.ui_events, queue=True)

    @property
    def history(self) -> Any:
        return self.server.history

    def render_first_paint(self) -> None:
        """The defaults' faces, drawn before the first visitor comes: the page shows them without a click."""
        d = self.defaults
        self.first["tiles"], self.first["seeds"], self.first["grid"] = self.demo.generate_page(
            d.seed, d.count, d.truncation)
        self.first["strip"], self.first["gif"] = self.demo.interpolate(
            d.seed_a, d.seed_b, d.more_seeds, d.frames, d.method, d.closed, d.walk_truncation)
        self.first["brush_face"] = self.steering.complete_source("seed", d.complete_seed, 1.0, "", None)


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
    page = Page(server, demo_handlers, SteeringHandlers(server, demo_handlers.files, demo_handlers.uploads), mcp)
    page.render_first_paint()
    with gr.Blocks(title="DCGAN 64×64 faces", delete_cache=(3600, 3600)) as blocks:
        gr.Markdown("# DCGAN 64×64 faces\nEvery seed is one face, the same on every machine. "
                    "Click a face to walk from it; upload a photo to find yourself in latent space.")
        with gr.Accordion("Model", open=False):
            gr.Markdown(server.status.markdown(), elem_id="model-info")
        with gr.Tabs(elem_id="tabs") as page.parts["tabs"]:
            build_generate_tab(page)
            build_interpolate_tab(page)
            build_project_tab(page)
            page.parts["edit"] = build_edit_tab(page.steering, page.defaults)
            page.parts["arithmetic"] = build_arithmetic_tab(page.defaults)
            page.parts["complete"] = build_complete_tab(page.first["brush_face"], page.defaults)
            if page.history is not None:
                build_training_tab(page)
        build_public_api(page)
        remember = url_state(page)
        wire_generate(page, remember)
        wire_walk_and_face(page, remember)
        wire_training(page, remember)
        wire_steering(page.steering, page.parts["edit"], page.parts["arithmetic"], page.parts["complete"],
                      tabs=page.parts["tabs"], remember=remember, model_events=page.model_events,
                      page_events=page.page_events, ui_events=page.ui_events, mcp=mcp)
        wire_ways_into_edit(page, remember)
        wire_tabs_and_first_paint(page, blocks)
    return blocks.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=MAX_QUEUE, api_open=False)


# -- the tabs --------------------------------------------------------------------------------------------


def build_generate_tab(page: Page) -> None:
    d, first, parts = page.defaults, page.first, page.parts
    with gr.Tab("Generate", id="generate", elem_id="tab-generate") as parts["generate_tab"]:
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                parts["seed"] = gr.Number(value=d.seed, label="seed", elem_id="seed", precision=0)
                parts["dice"] = gr.Button("Random seed", size="sm", elem_id="random-seed")
                parts["count"] = gr.Slider(1, MAX_IMAGES, value=d.count, step=1, label="number of images",
                                           elem_id="count")
                parts["truncation"] = gr.Slider(0.05, 1.5, value=d.truncation, step=0.05,
                                                label="truncation (scale of z, 1.0 = off)", elem_id="truncation")
                parts["go"] = gr.Button("Generate", variant="primary", elem_id="generate")
                parts["grid_download"] = gr.DownloadButton("Download grid (PNG)", value=first["grid"],
                                                           elem_id="grid-download")
                parts["walk_preview"] = gr.Image(  # the current walk, so the first view moves too
                    first["gif"], label="latent walk (see Interpolate)", type="filepath", image_mode=None,
                    interactive=False, height=180, elem_id="walk-preview", buttons=[])
            with gr.Column(scale=3):
                parts["gallery"] = gr.Gallery(first["tiles"], label="faces (click one)", format="png", columns=8,
                                              height="auto", allow_preview=False, object_fit="contain",
                                              elem_id="gallery", interactive=False)
                with gr.Row(visible=False, elem_id="tile-actions") as parts["tile_actions"]:
                    parts["picked_label"] = gr.Markdown(elem_id="picked")
                    parts["use_a"] = gr.Button("Use as seed A", size="sm", elem_id="use-a")
                    parts["use_b"] = gr.Button("Use as seed B", size="sm", elem_id="use-b")
                    parts["show_larger"] = gr.Button("Show larger", size="sm", elem_id="show-larger")
                    parts["edit_tile"] = gr.Button("Edit this face", size="sm", elem_id="edit-tile")
                parts["larger"] = gr.Image(label="larger", type="filepath", format="png", interactive=False,
                                           visible=False, height=384, elem_id="larger", buttons=["download"])
        parts["shown_seeds"] = gr.State(first["seeds"])
        parts["picked"] = gr.State(None)  # (seed, truncation) of the clicked tile
        parts["generate_inputs"] = [parts["seed"], parts["count"], parts["truncation"]]
        parts["generate_examples"] = gr.Dataset(components=parts["generate_inputs"],
                                                samples=[list(row) for row in GENERATE_EXAMPLES],
                                                label="examples", type="values", elem_id="generate-examples")


def build_interpolate_tab(page: Page) -> None:
    d, first, parts = page.defaults, page.first, page.parts
    with gr.Tab("Interpolate", id="interpolate", elem_id="tab-interpolate") as parts["interpolate_tab"]:
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                with gr.Row():
                    parts["seed_a"] = gr.Number(value=d.seed_a, label="seed A", elem_id="seed-a", precision=0)
                    parts["seed_b"] = gr.Number(value=d.seed_b, label="seed B", elem_id="seed-b", precision=0)
                parts["more_seeds"] = gr.Textbox(d.more_seeds, label="more seeds (optional)",
                                                 placeholder="e.g. 7, 99", elem_id="more-seeds")
                parts["closed"] = gr.Checkbox(d.closed, label="closed loop (back to the start)", elem_id="closed")
                parts["frames"] = gr.Slider(MIN_FRAMES, MAX_FRAMES, value=d.frames, step=1, label="frames",
                                            elem_id="frames")
                parts["method"] = gr.Radio(list(METHODS), value=d.method, label="path", elem_id="method")
                parts["walk_truncation"] = gr.Slider(0.05, 1.5, value=d.walk_truncation, step=0.05,
                                                     label="truncation", elem_id="walk-truncation")
                with gr.Accordion("Start or end at a projected face", open=False,
                                  elem_id="face-ends") as parts["face_ends"]:
                    parts["start_latent"] = gr.Textbox(d.start_latent, label="start latent (replaces seed A)",
                                                       max_lines=1, placeholder="a token from the Your face tab",
                                                       elem_id="start-latent")
                    parts["end_latent"] = gr.Textbox(d.end_latent, label="end latent (replaces seed B)", max_lines=1,
                                                     elem_id="end-latent")
                parts["walk"] = gr.Button("Interpolate", variant="primary", elem_id="interpolate")
            with gr.Column(scale=2):
                live_panel("walk", {  # live mode (issue 18): play and scrub the walk in the browser
                    "seed_a": "seed-a", "seed_b": "seed-b", "more_seeds": "more-seeds", "frames": "frames",
                    "method": "method", "closed": "closed", "truncation": "walk-truncation",
                    "start_latent": "start-latent", "end_latent": "end-latent",
                    "frame_number": "edit-frame-number", "frame_ms": GIF_FRAME_MS})
                parts["animation"] = gr.Image(  # image_mode=None: the GIF (palette mode) passes on untouched
                    first["gif"], label="animation", type="filepath", image_mode=None, interactive=False,
                    elem_id="gif", height=256)
                parts["strip"] = gr.Image(first["strip"], label="frames", type="filepath", image_mode=None,
                                          format="png", interactive=False, elem_id="strip",
                                          buttons=["download", "fullscreen"])
                parts["gif_download"] = gr.DownloadButton("Download GIF", value=first["gif"], elem_id="gif-download")
                with gr.Row():
                    parts["edit_frame"] = gr.Number(value=1, label="frame", precision=0, minimum=1,
                                                    elem_id="edit-frame-number")
                    parts["edit_walk"] = gr.Button("Edit this frame", size="sm", elem_id="edit-frame")
        parts["walk_inputs"] = [parts[name] for name in ("seed_a", "seed_b", "more_seeds", "frames", "method",
                                                         "closed", "walk_truncation", "start_latent", "end_latent")]
        parts["walk_examples"] = gr.Dataset(components=parts["walk_inputs"][:7],
                                            samples=[list(row) for row in INTERPOLATE_EXAMPLES],
                                            label="examples", type="values", elem_id="walk-examples")


def build_project_tab(page: Page) -> None:
    parts = page.parts
    with gr.Tab("Your face", id="project", elem_id="tab-project") as parts["project_tab"]:
        gr.Markdown(
            f"Upload a photo of a face ({photos.ACCEPTED}, at most {photos.MAX_BYTES // 2**20} MB). "
            "It is cropped to the centre and shrunk to 64×64 like the training faces, then the "
            "latent whose face looks most like it is searched for (a few seconds). "
            "The photo is deleted as soon as it has been read; nothing of it is kept."
        )
        with gr.Row():
            parts["photo"] = gr.Image(label="upload a photo", type="filepath", sources=["upload"], height=256,
                                      elem_id="photo", scale=1)
            parts["crop"] = gr.HTML(elem_id="photo-crop", js_on_load=None, scale=2)
            parts["reconstruction"] = gr.Image(label="its face in latent space", type="filepath", format="png",
                                               interactive=False, height=256, elem_id="reconstruction", scale=1)
        parts["loss"] = gr.Markdown(elem_id="projection-loss")
        parts["token"] = gr.Textbox(label="latent token (for /interpolate and links)", max_lines=1,
                                    buttons=["copy"], elem_id="token")
        with gr.Row():
            parts["to_seed"] = gr.Number(value=page.defaults.seed, label="walk from my face to seed", precision=0,
                                         elem_id="to-seed")
            parts["walk_from_face"] = gr.Button("Walk from my face", variant="primary", elem_id="walk-from-face")
            parts["edit_face"] = gr.Button("Edit my face", elem_id="edit-my-face")


def build_training_tab(page: Page) -> None:
    history, d, parts = page.history, page.defaults, page.parts
    with gr.Tab("Training", id="training", elem_id="tab-training") as parts["training_tab"]:
        gr.Markdown(f"The same seeds at each epoch of the run ({history.where}): "
                    f"{len(history.revisions)} revisions, loaded when asked for and at most "
                    f"{history.cache.capacity} kept in memory.")
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                parts["epoch"] = gr.Slider(history.epochs[0], history.epochs[-1], value=history.epochs[-1],
                                           step=1, label="epoch", elem_id="epoch")
                parts["training_seeds"] = gr.Textbox(value=d.training_seeds, label="seeds", elem_id="training-seeds")
                parts["training_grid"] = gr.Image(label="at this epoch", type="filepath", format="png",
                                                  interactive=False, elem_id="training-grid", height=320)
                parts["which"] = gr.Markdown(elem_id="training-revision")
            with gr.Column(scale=1, min_width=240):
                parts["gif_seed"] = gr.Number(value=d.gif_seed, label="follow one seed", precision=0,
                                              elem_id="gif-seed")
                parts["training_gif"] = gr.Image(label="across all epochs", type="filepath", image_mode=None,
                                                 interactive=False, elem_id="training-gif", height=256)
                parts["training_strip"] = gr.Image(label="epochs, oldest first", type="filepath", image_mode=None,
                                                   format="png", interactive=False, elem_id="training-strip")
                parts["epochs_shown"] = gr.Markdown(elem_id="training-epochs")
        parts["training_inputs"] = [parts["epoch"], parts["training_seeds"], parts["truncation"]]
        parts["gif_inputs"] = [parts["gif_seed"], parts["truncation"]]


# -- the API and the URL ---------------------------------------------------------------------------------


def build_public_api(page: Page) -> None:
    """Hidden triggers, so the page's richer outputs don't change the public endpoints."""
    parts, handlers = page.parts, page.handlers
    with gr.Row(visible=False):
        api_grid = gr.Image(type="filepath", format="png")
        api_generate = gr.Button()
        api_project = gr.Button()
        api_outputs = [gr.Image(type="filepath", format="png"), gr.Textbox(), gr.JSON()]
    api_generate.click(handlers["generate"], parts["generate_inputs"], api_grid, api_name="generate",
                       **page.model_events)
    api_project.click(handlers["project"], parts["photo"], api_outputs, api_name="project",
                      **{**page.model_events, "api_visibility": "undocumented" if page.mcp else "public"})
    gr.api(handlers["model_info"], api_name="model_info")


def url_state(page: Page) -> dict[str, Any]:
    """The components of every PageState field the page keeps, in its order, and the event that
    writes them to the URL after each result (``remember``)."""
    parts = page.parts
    steering = {"edit_seed": ("edit", "seed"), "edit_truncation": ("edit", "truncation"),
                "edit_latent": ("edit", "latent"), "edit": ("edit", "text"), "sweep_direction": ("edit", "direction"),
                "group_a": ("arithmetic", "group_a"), "group_b": ("arithmetic", "group_b"),
                "group_c": ("arithmetic", "group_c"), "noise_seed": ("arithmetic", "noise"),
                "complete_seed": ("complete", "seed"), "complete_latent": ("complete", "latent"),
                "mask": ("complete", "mask")}
    fields = page.demo.state_fields()
    parts["state_components"] = [parts[steering[name][0]][steering[name][1]] if name in steering else parts[name]
                                 for name in fields]
    keys_by_field = {name: key for key, name in KEYS.items()}
    return dict(fn=None, inputs=parts["state_components"], outputs=None,
                js=url_script([keys_by_field[name] for name in fields]), **page.js_events)


# -- the events ------------------------------------------------------------------------------------------


def wire_generate(page: Page, remember: dict[str, Any]) -> None:
    parts, handlers, ui_events = page.parts, page.handlers, page.ui_events
    inputs, grid = parts["generate_inputs"], [parts["gallery"], parts["shown_seeds"], parts["grid_download"]]
    draw = dict(fn=handlers["generate_page"], inputs=inputs, outputs=grid, **page.page_events)
    for trigger in (parts["go"].click, parts["seed"].submit):
        trigger(**draw).success(**remember)
    parts["dice"].click(random_seed, None, parts["seed"], **ui_events).then(**draw).success(**remember)
    gr.on([parts["count"].release, parts["truncation"].release], **draw).success(**remember)
    parts["gallery"].select(messages(pick_tile), parts["shown_seeds"],
                            [parts["picked"], parts["tile_actions"], parts["picked_label"], parts["larger"]],
                            **ui_events)
    parts["use_a"].click(messages(use_as("A")), parts["picked"], parts["seed_a"], **ui_events).then(**remember)
    parts["use_b"].click(messages(use_as("B")), parts["picked"], parts["seed_b"], **ui_events).then(**remember)
    parts["show_larger"].click(messages(page.demo.larger), parts["picked"], parts["larger"], **page.page_events)
    parts["generate_examples"].click(lambda row: row, parts["generate_examples"], inputs, **ui_events).then(
        **draw).success(**remember)


def pick_tile(shown: list, event: gr.SelectData) -> tuple:
    """A tile was clicked: its seed from the server's own list (only the index is used)."""
    index = event.index if isinstance(event.index, int) and not isinstance(event.index, bool) else -1
    if not 0 <= index < len(shown):
        return None, gr.Row(visible=False), "", gr.Image(visible=False)
    seed_value, scale = shown[index]
    return (seed_value, scale), gr.Row(visible=True), f"**seed {seed_value}**", gr.Image(visible=False)


def use_as(letter: str) -> Callable[[tuple[int, float] | None], int]:
    def use(chosen: tuple[int, float] | None) -> int:
        if chosen is None:
            raise gr.Error("click a face first")
        gr.Info(f"seed {letter} = {chosen[0]}")
        return chosen[0]
    return use


def wire_walk_and_face(page: Page, remember: dict[str, Any]) -> None:
    parts, handlers, ui_events, page_events = page.parts, page.handlers, page.ui_events, page.page_events
    walk_inputs, walk_outputs = parts["walk_inputs"], [parts["strip"], parts["animation"]]
    parts["walk"].click(handlers["interpolate"], walk_inputs, walk_outputs, api_name="interpolate",
                        **page.model_events).success(**remember)
    parts["animation"].change(lambda path: (path, path), parts["animation"],
                              [parts["gif_download"], parts["walk_preview"]], **ui_events)
    parts["walk_examples"].click(lambda row: [*row, "", ""], parts["walk_examples"], walk_inputs, **ui_events).then(
        handlers["interpolate"], walk_inputs, walk_outputs, **page_events).success(**remember)
    parts["photo"].upload(handlers["project_page"], parts["photo"],
                          [parts["photo"], parts["crop"], parts["reconstruction"], parts["loss"], parts["token"]],
                          **page_events)
    parts["walk_from_face"].click(messages(start_walk_from_face), [parts["token"], parts["to_seed"]],
                                  [parts["start_latent"], parts["seed_b"], parts["tabs"], parts["face_ends"]],
                                  **ui_events).success(
        handlers["interpolate"], walk_inputs, walk_outputs, **page_events).success(**remember)


def start_walk_from_face(face: str, seed_number: float) -> tuple:
    if not face:
        raise gr.Error("upload a photo first: its latent becomes the walk's start")
    return (face, check_seed_input(seed_number, "seed"), gr.Tabs(selected="interpolate"),
            gr.Accordion(open=True))  # shows that the walk starts at the face, not at seed A


def wire_training(page: Page, remember: dict[str, Any]) -> None:
    if page.history is None:
        return
    parts, handlers, model_events, page_events = page.parts, page.handlers, page.model_events, page.page_events
    show_epoch = dict(fn=handlers["training_grid"], inputs=parts["training_inputs"],
                      outputs=[parts["training_grid"], parts["which"]])
    show_gif = dict(fn=handlers["training_gif"], inputs=parts["gif_inputs"],
                    outputs=[parts["training_gif"], parts["training_strip"], parts["epochs_shown"]])
    # input: typing + Enter, and live while dragging (always_last drops the backlog); release: the drop
    gr.on([parts["epoch"].input, parts["epoch"].release, parts["training_seeds"].submit], api_name="training_grid",
          **show_epoch, trigger_mode="always_last", **model_events).success(**remember)
    parts["gif_seed"].submit(api_name="training_gif", **show_gif, **model_events).success(**remember)
    parts["training_tab"].select(**show_epoch, **page_events).then(**show_gif, **page_events)


def wire_ways_into_edit(page: Page, remember: dict[str, Any]) -> None:
    """Edit this face (a tile), this frame (a walk), my face (a projection): each opens the Edit tab on it."""
    parts, edit, steering, ui_events = page.parts, page.parts["edit"], page.steering, page.ui_events
    tabs = parts["tabs"]
    open_edit = dict(fn=messages(steering.edit_text_page), inputs=[edit["seed"], edit["truncation"],
                                                                    edit["latent"], edit["text"]],
                     outputs=[*edit["sliders"], edit["face"], edit["token"], edit["text"]], **page.page_events)
    parts["edit_tile"].click(messages(lambda chosen: (*edit_start(chosen), gr.Tabs(selected="edit"))),
                             parts["picked"], [edit["seed"], edit["truncation"], edit["latent"], edit["text"], tabs],
                             **ui_events).success(**open_edit).success(**remember)
    parts["edit_walk"].click(messages(steering.edit_from_walk), [*parts["walk_inputs"], parts["edit_frame"]],
                             [edit["latent"], tabs], **page.page_events).success(**open_edit).success(**remember)
    parts["edit_face"].click(messages(lambda face: (require_token(face, "upload a photo first: its latent is edited"),
                                                    gr.Tabs(selected="edit"))), parts["token"], [edit["latent"], tabs],
                             **ui_events).success(**open_edit).success(**remember)


def wire_tabs_and_first_paint(page: Page, blocks: gr.Blocks) -> None:
    """Each tab writes itself into the URL; a link's state is read (with the form's checks) and drawn."""
    parts, handlers, page_events = page.parts, page.handlers, page.page_events
    tab_list = [(parts["generate_tab"], "generate"), (parts["interpolate_tab"], "interpolate"),
                (parts["project_tab"], "project"), (parts["edit"]["tab"], "edit"),
                (parts["arithmetic"]["tab"], "arithmetic"), (parts["complete"]["tab"], "complete")]
    if page.history is not None:
        tab_list.append((parts["training_tab"], "training"))
    for tab, name in tab_list:
        tab.select(None, None, None, js=tab_script(name), **page.js_events)
    first_tab = gr.State("")
    grid = [parts["gallery"], parts["shown_seeds"], parts["grid_download"]]
    loaded = blocks.load(handlers["load_page"], None, [parts["tabs"], first_tab, *parts["state_components"], *grid],
                         **page_events)
    loaded = loaded.then(when_linked(handlers["interpolate"]), [first_tab, *parts["walk_inputs"]],
                         [parts["strip"], parts["animation"]], **page_events)
    if page.history is not None:  # a link to the Training tab draws it at once; otherwise its select does
        loaded = loaded.then(when_linked(handlers["training_grid"], "training"),
                             [first_tab, *parts["training_inputs"]], [parts["training_grid"], parts["which"]],
                             **page_events).then(
            when_linked(handlers["training_gif"], "training"), [first_tab, *parts["gif_inputs"]],
            [parts["training_gif"], parts["training_strip"], parts["epochs_shown"]], **page_events)
    loaded = link_steering(loaded, page.steering, parts["edit"], parts["arithmetic"], parts["complete"], first_tab,
                           page_events)
    loaded.then(None, None, None, js=LOADED_SCRIPT, **page.js_events)

"""The Edit, Arithmetic and Complete tabs' events, their API endpoints, and a link's first
paint of them.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..completion import PRESETS

from .common import messages
from .steering_handlers import SteeringHandlers


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

"""The Edit, Arithmetic and Complete tabs' layout (live mode's panel in Edit).
"""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from .. import photos
from ..completion import PRESET_BOXES, PRESET_LABELS, PRESETS
from ..directions import MAX_AMOUNT
from ..serving import live
from ..serving.page_state import PageState

from .steering_handlers import COMPLETE_SOURCES, SteeringHandlers


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

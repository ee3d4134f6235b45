"""The dcgan_hf demo: a thin Gradio UI over ``dcgan_hf.serving``.

    python app.py                                   # the bundled model, offline
    python app.py --model user/dcgan-celeba@epoch-5 # a Hub model (or DCGAN_MODEL=...)
    python app.py --model path/to/folder            # a save_pretrained folder

The same file runs unchanged as a Hugging Face Space (``app_file: app.py``). All model
work - loading, devices, validation, the inference worker - lives in dcgan_hf.serving;
this file only lays out components and maps ValueError to gr.Error.

API (``gradio_client``)::

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/")
    grid_png = client.predict(seed=42, n=16, truncation=1.0, api_name="/generate")
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from typing import Any, Callable, Sequence, TypeVar

try:  # ZeroGPU Spaces: `spaces` must be imported before torch initialises CUDA
    import spaces
except ImportError:
    spaces = None

import gradio as gr

from dcgan_hf.hub import BUNDLED_MODEL
from dcgan_hf.models import ModelLoadError
from dcgan_hf.serving import (
    MAX_FRAMES,
    MAX_IMAGES,
    METHODS,
    MIN_FRAMES,
    GenerateRequest,
    InterpolateRequest,
    ModelServer,
    OutputFolder,
    random_seed,
)

T = TypeVar("T")

CONCURRENCY_LIMIT = 4  # requests in flight at once; they share one inference worker
MAX_QUEUE = 64  # waiting requests beyond this are turned away with "queue full"
CSS = """
#grid img, #gif img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
#strip img { width: 100%; height: auto; image-rendering: pixelated; }
"""  # 64-px faces: scale them up to the box, crisp
GENERATE_EXAMPLES = ((42, 16, 1.0), (2024, 64, 0.7), (7, 1, 1.0))
INTERPOLATE_EXAMPLES = (
    (1, 2, "", 24, "slerp", False, 1.0),
    (10, 20, "30, 40", 40, "slerp", True, 0.8),
    (5, 6, "", 12, "lerp", False, 1.0),
)


def on_gpu(fn: Callable[..., T]) -> Callable[..., T]:
    """``spaces.GPU`` when the package is there (a no-op off ZeroGPU), else ``fn`` itself."""
    return spaces.GPU(fn) if spaces is not None else fn


def user_input(parse: Callable[..., T], *values: Any) -> T:
    """Validate form/API values; a bad one becomes a gr.Error and changes nothing."""
    try:
        return parse(*values)
    except ValueError as error:
        raise gr.Error(str(error)) from None


def build_demo(server: ModelServer, output_dir: str | os.PathLike | None = None) -> gr.Blocks:
    """The Blocks app for ``server``, queue configured; results are written to ``output_dir``."""
    files = OutputFolder(output_dir or tempfile.mkdtemp(prefix="dcgan-app-"))
    render_grid = on_gpu(server.generate)
    render_path = on_gpu(server.interpolate)

    def generate(seed: float, n: float, truncation: float) -> str:
        """Images for seeds seed, seed+1, …, seed+n-1 as one PNG grid (a file path)."""
        request = user_input(GenerateRequest.parse, seed, n, truncation)
        return files.write(request.filename, render_grid(request).png)

    def interpolate(
        seed_a: float, seed_b: float, more_seeds: str, frames: float, method: str, closed: bool, truncation: float
    ) -> tuple[str, str]:
        """A latent walk seed_a → seed_b → more seeds (→ seed_a if closed): PNG frame strip and GIF."""
        request = user_input(InterpolateRequest.parse, seed_a, seed_b, more_seeds, frames, method, closed, truncation)
        result = render_path(request)
        stem = request.filename_stem
        return files.write(f"{stem}-strip.png", result.strip_png), files.write(f"{stem}.gif", result.gif)

    def model_info() -> dict[str, Any]:
        """Which model, revision, config, device and precision serve, and any fallback."""
        return server.status.as_dict()

    # preprocess=False: handlers get the raw values and dcgan_hf.serving checks them all
    # (gr.Slider's own range check crashes on a non-number with an opaque error).
    model_events = dict(concurrency_limit=CONCURRENCY_LIMIT, concurrency_id="model", preprocess=False)
    private = dict(queue=False, api_visibility="private")

    with gr.Blocks(title="DCGAN 64×64 faces", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# DCGAN 64×64 faces\nEvery seed is one face, the same on every machine.")
        with gr.Accordion("Model", open=True):
            gr.Markdown(server.status.markdown(), elem_id="model-info")

        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    seed = gr.Number(value=42, label="seed", elem_id="seed")
                    dice = gr.Button("Random seed", size="sm", elem_id="random-seed")
                    count = gr.Slider(1, MAX_IMAGES, value=16, step=1, label="number of images", elem_id="count")
                    truncation = gr.Slider(
                        0.05, 1.5, value=1.0, step=0.05, label="truncation (scale of z, 1.0 = off)",
                        elem_id="truncation",
                    )
                    go = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column(scale=2):
                    grid = gr.Image(
                        label="samples", type="filepath", image_mode=None, format="png", interactive=False,
                        elem_id="grid", height=420, buttons=["download", "fullscreen"],
                    )
                    grid_download = gr.DownloadButton("Download grid (PNG)", elem_id="grid-download")
            inputs = [seed, count, truncation]
            go.click(generate, inputs, grid, api_name="generate", **model_events)
            dice.click(random_seed, None, seed, **private).then(
                generate, inputs, grid, api_visibility="private", **model_events
            )
            gr.Examples(
                [list(row) for row in GENERATE_EXAMPLES], inputs, grid, fn=generate, run_on_click=True,
                cache_examples=False,
            )
            grid.change(lambda path: path, grid, grid_download, **private)  # whatever filled the grid

        with gr.Tab("Interpolate"):
            with gr.Row():
                with gr.Column(scale=1):
                    with gr.Row():
                        seed_a = gr.Number(value=1, label="seed A", elem_id="seed-a")
                        seed_b = gr.Number(value=2, label="seed B", elem_id="seed-b")
                    more = gr.Textbox(label="more seeds (optional)", placeholder="e.g. 7, 99", elem_id="more-seeds")
                    closed = gr.Checkbox(label="closed loop (back to seed A)", elem_id="closed")
                    frames = gr.Slider(MIN_FRAMES, MAX_FRAMES, value=24, step=1, label="frames", elem_id="frames")
                    method = gr.Radio(list(METHODS), value="slerp", label="path", elem_id="method")
                    walk_truncation = gr.Slider(
                        0.05, 1.5, value=1.0, step=0.05, label="truncation", elem_id="walk-truncation"
                    )
                    walk = gr.Button("Interpolate", variant="primary", elem_id="interpolate")
                with gr.Column(scale=2):
                    animation = gr.Image(  # image_mode=None: the GIF (palette mode) passes on untouched
                        label="animation", type="filepath", image_mode=None, interactive=False, elem_id="gif",
                        height=256,
                    )
                    strip = gr.Image(
                        label="frames", type="filepath", image_mode=None, format="png", interactive=False,
                        elem_id="strip", buttons=["download", "fullscreen"],
                    )
                    gif_download = gr.DownloadButton("Download GIF", elem_id="gif-download")
            walk_inputs = [seed_a, seed_b, more, frames, method, closed, walk_truncation]
            walk.click(interpolate, walk_inputs, [strip, animation], api_name="interpolate", **model_events)
            gr.Examples(
                [list(row) for row in INTERPOLATE_EXAMPLES], walk_inputs, [strip, animation], fn=interpolate,
                run_on_click=True, cache_examples=False,
            )
            animation.change(lambda path: path, animation, gif_download, **private)

        gr.api(model_info, api_name="model_info")
    return demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=MAX_QUEUE)


def default_host() -> str:
    """127.0.0.1 locally; what the Space asks for (or all interfaces) on a Space."""
    if os.environ.get("GRADIO_SERVER_NAME"):
        return os.environ["GRADIO_SERVER_NAME"]
    return "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="DCGAN 64×64 demo (Gradio)")
    parser.add_argument(
        "--model", default=os.environ.get("DCGAN_MODEL") or str(BUNDLED_MODEL),
        help="Hub repo id with optional @revision, or a local folder (env DCGAN_MODEL; default: bundled model)",
    )
    parser.add_argument(
        "--fallback-model", default=os.environ.get("DCGAN_FALLBACK_MODEL") or str(BUNDLED_MODEL),
        help="served when --model cannot be loaded (env DCGAN_FALLBACK_MODEL; default: bundled model)",
    )
    parser.add_argument("--device", default=os.environ.get("DCGAN_DEVICE", "auto"), help="auto, cpu or cuda[:N]")
    parser.add_argument("--host", default=default_host(), help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes
    try:
        server = ModelServer.start(args.model, fallback=args.fallback_model, device=args.device)
    except ModelLoadError as error:
        hint = "Give a model with --model FOLDER or --model user/repo[@revision]."
        raise SystemExit(f"app.py: {error}\n{hint}") from None
    except ValueError as error:  # a bad --device or model spec
        raise SystemExit(f"app.py: {error}") from None
    try:
        with tempfile.TemporaryDirectory(prefix="dcgan-app-") as output_dir:
            build_demo(server, output_dir).launch(
                server_name=args.host, server_port=args.port, theme=gr.themes.Soft(), css=CSS, show_error=False
            )
    finally:
        server.close()


if __name__ == "__main__":
    main()

"""The dcgan_hf demo: a thin Gradio UI over ``dcgan_hf.serving``.

    python app.py                                   # the bundled model, offline
    python app.py --model user/dcgan-celeba@epoch-5 # a Hub model (or DCGAN_MODEL=...)
    python app.py --model path/to/folder            # a save_pretrained folder or a train.py run folder
    python app.py --mcp                             # also an MCP server (or DCGAN_MCP=1)

The same file runs unchanged as a Hugging Face Space (``app_file: app.py``). All model
work - loading, devices, validation, the inference worker, projection, training history -
lives in ``dcgan_hf.serving``; the page (one builder per tab, the handlers, the wiring) is
``dcgan_hf.ui``. This file parses the command line, starts the server and launches the page
behind the route guard (see ARCHITECTURE.md).

API (``gradio_client``)::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    grid_png = client.predict(seed=42, n=16, truncation=1.0, api_name="/generate")
    face_png, token, summary = client.predict(photo=handle_file("me.jpg"), api_name="/project")
    strip_png, gif = client.predict(seed_a=0, seed_b=42, start_latent=token, api_name="/interpolate")
    edited_png, edited = client.predict(seed=7, truncation=1.0, latent=token, edit="smile=2", api_name="/edit")
    figure_png, result = client.predict(expression="0,27,47 - 1,15,49 + 21,25,34", truncation=1.0,
                                        noise_seed=0, api_name="/arithmetic")
    filled_png, summary = client.predict(seed=7, truncation=1.0, latent="", mask="eyes", api_name="/complete")
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import tempfile
from pathlib import Path
from typing import Any, Sequence

try:  # ZeroGPU Spaces: `spaces` must be imported before torch initialises CUDA
    import spaces  # noqa: F401
except ImportError:
    spaces = None

import gradio as gr
from gradio import utils as gradio_utils
from starlette.middleware import Middleware

from dcgan_hf import photos
from dcgan_hf.hub.loading import BUNDLED_MODEL
from dcgan_hf.models import ModelLoadError
from dcgan_hf.serving import live
from dcgan_hf.serving.api_calls import ApiShapes
from dcgan_hf.serving.route_guard import GuardSettings, RouteGuard
from dcgan_hf.serving.server import ModelServer
from dcgan_hf.serving.uploads import UploadLedger
from dcgan_hf.ui.common import CONCURRENCY_LIMIT, CSS, MAX_QUEUE, gradio_cache_dir  # noqa: F401  (tests, bench)
from dcgan_hf.ui.demo import build_demo
from dcgan_hf.ui.handlers import Demo  # noqa: F401  (the API's handlers, for in-process callers)
from dcgan_hf.ui.steering_handlers import SteeringHandlers  # noqa: F401

logger = logging.getLogger("app")


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
        # Spaces turn server-side rendering on by default (Gradio ≥ 5): it needs Node in the Space, is
        # known to break gradio_client calls into ZeroGPU Spaces, and our page scripts (URL state, the
        # brush, the first paint) and the route guard were built and tested on the client-rendered page
        ssr_mode=False,
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

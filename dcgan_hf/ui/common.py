"""The Gradio layer's shared pieces: queue limits, the page's CSS and small scripts, error
messages, and ``spaces.GPU`` around model calls (a no-op off ZeroGPU).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import gradio as gr
from gradio import utils as gradio_utils

from .. import images as imaging
from ..serving import gpu_time
from ..serving.page_state import query_defaults
from ..serving.server import MAX_GIF_REVISIONS, ModelServer, evenly_spaced

try:  # ZeroGPU Spaces: app.py imports `spaces` first, before torch initialises CUDA
    import spaces
except ImportError:
    spaces = None


T = TypeVar("T")
logger = logging.getLogger("app")

CONCURRENCY_LIMIT = 4  # requests in flight at once; they share one inference worker
MAX_QUEUE = 64  # waiting requests beyond this are turned away with "queue full"
UI_CONCURRENCY = 8  # page-only events (tile clicks, tab switches): no model work
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


def on_gpu(fn: Callable[..., T], duration: gpu_time.Duration) -> Callable[..., T]:
    """``spaces.GPU(duration=…)`` when the package is there (a no-op off ZeroGPU), else ``fn`` itself.

    ``duration`` is a callable of the call's arguments (dcgan_hf.serving.gpu_time): each call asks for
    the GPU time it needs, not one flat worst case."""
    return spaces.GPU(duration=duration)(fn) if spaces is not None else fn


def gpu_durations(server: ModelServer) -> dict[str, gpu_time.Duration]:
    return gpu_time.durations(server.history, lambda history: evenly_spaced(history.revisions, MAX_GIF_REVISIONS))


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


def when_linked(handler: Callable[..., T], tab: str | None = None) -> Callable[..., Any]:
    """``handler`` for a link's first paint: run only when the link carried state (and opened ``tab``)."""

    def run(first_tab: str, *values: Any) -> Any:
        wanted = first_tab != "" and (tab is None or first_tab == tab)
        return handler(*values) if wanted else gr.skip()

    return run


def face_data_uri(image: Any) -> str:
    """A uint8 (C, 64, 64) face as an inline PNG: photos and their crops are never written to disk."""
    return data_uri(imaging.png_bytes(imaging.to_pil(image[None])[0]))


def gradio_cache_dir() -> Path:
    """Where Gradio stores uploads and results (``GRADIO_TEMP_DIR``, else <tmp>/gradio)."""
    return Path(gradio_utils.get_upload_folder()).resolve()

"""The Hugging Face Hub: where models come from and go to.

- :mod:`.client` — the one place that calls ``huggingface_hub`` (downloads, repo creation,
  uploads, tags, error translation); :mod:`dcgan_hf.models` uses it for ``from_pretrained``
- :mod:`.loading` — model specs (``user/repo@rev`` or a folder), the bundled model, loading a
  model to serve with the local cache as fallback, whole-folder downloads
- :mod:`.pusher` — background pushes from training, retried, never fatal
- :mod:`.card` — the model card (README.md beside the weights) and its metadata
"""

from .._lazy import by_module, exports

_EXPORTS = by_module(
    loading="BUNDLED_MODEL BUNDLED_REPO_ID ModelSpec parse_model_spec load_generator LoadedModel load_model "
            "hub_commit download_folder",
    pusher="PushResult PushSummary HubPusher",
    client="publish_folder hub_errors hub_is_reachable is_hub_repo_id",
)
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)

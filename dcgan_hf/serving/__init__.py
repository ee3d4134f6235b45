"""Everything the demo needs that is not UI: the layer between the library and app.py.

- :mod:`.requests` — a form's, link's or API call's values checked into requests (the library's
  seed and truncation grammar); :mod:`.steering` — the Edit, Arithmetic and Complete requests
- :mod:`.server` — :class:`ModelServer`: every model call of the demo, on :mod:`.worker`'s one
  inference thread, with :mod:`.threads`' thread count and precision
- :mod:`.fallback` — the model to serve, or the fallback when it cannot be loaded
- :mod:`.outputs` — the result files; :mod:`.gpu_time` — ZeroGPU durations per call
- :mod:`.page_state` and :mod:`.page_checks` — the page's state in its URL, read with the form's checks
- :mod:`.route_guard`, :mod:`.uploads`, :mod:`.api_calls` — bounds on every request before Gradio
"""

from .._lazy import by_module, exports

_EXPORTS = by_module(
    requests="MAX_IMAGES MIN_FRAMES MAX_FRAMES MAX_KEYFRAMES METHODS check_whole_number check_seed_input "
             "check_truncation parse_seed_list GenerateRequest InterpolateRequest parse_latent_input parse_more_seeds "
             "random_seed",
    threads="SMALL_BATCH HALF_TOLERANCE PRECISION_CHECK_SEEDS on_zero_gpu available_cpus ThreadPolicy "
            "PrecisionChoice half_precision_difference try_half_precision choose_precision",
    server="STRIP_COLUMNS GIF_FRAME_MS PROJECTION_SLICE PROJECTION_SECONDS MAX_GIF_REVISIONS GeneratedGrid "
           "Interpolation Projection TrainingWalk RequestGauge ModelServer SWEEP_FRAME_MS TRAINING_GIF_FRAME_MS "
           "evenly_spaced fp32_on_cpu",
    fallback="ModelStatus BUNDLED_LABEL describe_source load_with_fallback find_discriminator load_revision_on",
    worker="InferenceWorker",
    outputs="OutputFolder",
)
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)

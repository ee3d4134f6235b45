"""The model card (README.md) that ``save_pretrained`` writes beside the weights.

One template for every publisher (``save_pretrained``, ``push_to_hub``, ``train.py``'s Hub
pushes, ``convert`` and the bundled model), so a card always carries the same metadata and the
same sections. FID/KID rows also go into the metadata as ``model-index`` eval results (what the
Hub shows in its evaluation widget); the usage snippet names the repo the card was pushed to, or
the folder it was saved in.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..layout import DISCRIMINATOR_DIR
from ..scores import METRIC_NAMES

TAGS = ("dcgan", "gan", "unconditional-image-generation", "pytorch")
TASK = "unconditional-image-generation"
# The project's home (the demo Space, whose README.md is the library's documentation).
REPO_URL = "https://huggingface.co/spaces/dcgan-hf/dcgan-faces/tree/main"
DOCS_URL = "https://huggingface.co/spaces/dcgan-hf/dcgan-faces/blob/main/README.md"
LOCAL_PLACEHOLDER = "path/to/this/folder"

TEMPLATE = """---
{{ card_data }}
---

# {{ title | default("DCGAN 64×64", true) }}

A DCGAN {{ model_kind }} ([Radford et al., 2015]({{ paper_url }})) for 64×64 {{ "RGB" if config.nc == 3 else "single-channel" if config.nc == 1 else config.nc ~ "-channel" }} images,
saved with the `dcgan_hf` library as `config.json` + `model.safetensors`.

{% if gallery %}<Gallery />

{% endif %}{% if sample_grid %}![Samples from this model]({{ sample_grid }})
{% endif %}{% if animation %}
![{{ animation_caption | default("Animation", true) }}]({{ animation }})
{% endif %}
## Use it
{% set source = repo_id or local_path %}{% if model_kind == "generator" %}
```python
from dcgan_hf import Generator, make_grid

G = Generator.from_pretrained("{{ source }}"){% if not repo_id %}  # this folder's path (or its Hub repo id once uploaded){% endif %}
images = G.sample(seeds=range(16))                # uint8 tensor (16, {{ config.nc }}, 64, 64), the same on every machine
faces = G.sample(seeds=range(16), output="pil")   # or a list of PIL images ("np": uint8 HWC arrays)
make_grid(faces).save("grid.png")
```

or `python -m dcgan_hf generate --model {{ source }} --seeds 0-15 --out grid.png`.
{% else %}
```python
from dcgan_hf import Discriminator

D = Discriminator.from_pretrained("{{ source }}"{% if repo_id %}, subfolder="{{ discriminator_dir }}"{% endif %}){% if not repo_id %}  # this folder's path{% endif %}
logits = D(images)  # images: float (N, {{ config.nc }}, 64, 64) in [-1, 1]; sigmoid(logits) = P(real)
```
{% endif %}
## Architecture

| key | value |
|---|---|
{% for key, value in config.items() %}| `{{ key }}` | {{ value }} |
{% endfor %}
## Evaluation

{% if metrics %}| metric | value | protocol |
|---|---|---|
{% for m in metrics %}| {{ m.name }} | {{ m.value }} | {{ m.protocol | default("", true) }} |
{% endfor %}{% else %}No metrics recorded yet (`python -m dcgan_hf evaluate --model … --real …` computes FID and KID).
{% endif %}{% if memorization_note %}
{{ memorization_note }}
{% endif %}{% if metric_curve or metric_history %}
### Over training

{% if metric_curve %}![FID and KID against images seen]({{ metric_curve }})

{% endif %}{% if metric_history %}| epoch | images seen | FID | KID ×1000 | precision | recall | generated vs real |
|---|---|---|---|---|---|---|
{% for row in metric_history %}| {{ row.epoch }} | {{ row.images }} | {{ row.fid }} | {{ row.kid }} | {{ row.precision }} | {{ row.recall }} | {{ row.protocol }} |
{% endfor %}{% endif %}{% endif %}
## Training

{% if training %}| | |
|---|---|
{% for key, value in training.items() %}| {{ key }} | {{ value }} |
{% endfor %}{% else %}Not recorded.
{% endif %}{% if notes %}
{{ notes }}
{% endif %}
## Limitations

- **64×64 pixels.** The architecture makes 64×64 images only; upscaling them adds no detail.
- **The data's biases.** CelebA, the data this project is built around, holds about 200,000
  aligned photos of about 10,000 celebrities: mostly young, light-skinned, smiling, made-up and
  well lit, with few children, old people or darker skin tones. A generator reproduces (and can
  amplify) that skew; its faces are not a sample of people in general.
- **Licence of the data.** CelebA is released for non-commercial research only and may not be
  redistributed; whether a model trained on it may be used commercially is the user's question
  to settle, not settled by the MIT licence of this code.
- **What FID at n samples means.** FID compares Inception-v3 feature statistics of n generated
  and m real images: lower is better, it is biased upwards for small n, and it depends on the
  reference images and the feature extractor. Numbers are comparable only at the same n, the
  same real set and the same protocol (given beside each value); KID is unbiased in n and
  reported with its standard deviation over subsets.
- A GAN can drop modes (miss kinds of faces) and make artefacts; generated faces depict no real
  person, but should not be used to impersonate anyone or in biometric systems.

## Data and licence

{{ data_notice | default("Trained on CelebA, which its authors release for non-commercial research only. No training images are included in this repository; generated images depict no real person.", true) }}

## Citation

```bibtex
@article{radford2015dcgan,
  title   = {Unsupervised Representation Learning with Deep Convolutional Generative Adversarial Networks},
  author  = {Radford, Alec and Metz, Luke and Chintala, Soumith},
  journal = {arXiv preprint arXiv:1511.06434},
  year    = {2015}
}
```

Code: {{ repo_url }} · Docs: {{ docs_url }}
"""


def render(
    model: Any,
    *,
    title: str | None = None,
    repo_id: str | None = None,
    local_path: str | None = None,
    sample_grid: str | None = None,
    animation: str | None = None,
    animation_caption: str | None = None,
    metrics: Sequence[Mapping[str, Any]] = (),
    training: Mapping[str, Any] | None = None,
    notes: str | None = None,
    data_notice: str | None = None,
    datasets: Sequence[str] | str | None = None,
    base_model: str | None = None,
    metric_curve: str | None = None,
    metric_history: Sequence[Mapping[str, Any]] = (),
    memorization_note: str | None = None,
) -> ModelCard:
    """Fill the template for ``model`` (a Generator or Discriminator).

    ``repo_id`` is the Hub repo the card is pushed to (the usage snippet loads from it); without
    one the snippet loads from ``local_path``, the folder. ``sample_grid``/``animation`` are paths
    inside the repo (a GIF for the latter); ``metrics`` rows are ``{"name", "value", "protocol"}``
    (see :meth:`dcgan_hf.scores.Scores.card_rows` for the keys that make them ``model-index`` eval results);
    ``training`` is shown as a two-column table; ``datasets`` (Hub dataset ids trained on) and
    ``base_model`` (the model a run was initialised from, a repo id) go into the metadata.
    ``metric_curve`` (a PNG in the repo) and ``metric_history`` (rows of :func:`history_rows`)
    show every evaluation of a training run; ``memorization_note`` states the copy check.
    """
    info = type(model)._hub_mixin_info
    rows = [dict(row) for row in metrics]
    name = repo_id or title or f"dcgan-64-{type(model).__name__.lower()}"
    gallery = gallery_items(sample_grid, animation, animation_caption)
    return ModelCard.from_template(
        card_data=card_data(info.model_card_data, model_name=name, rows=rows, datasets=datasets,
                            base_model=base_model, gallery=gallery),
        gallery=gallery,
        template_str=info.model_card_template,
        title=title,
        model_kind="generator" if type(model).__name__ == "Generator" else "discriminator",
        discriminator_dir=DISCRIMINATOR_DIR,
        paper_url=info.paper_url,
        repo_url=info.repo_url or REPO_URL,
        docs_url=info.docs_url or DOCS_URL,
        repo_id=repo_id,
        local_path=local_path or LOCAL_PLACEHOLDER,
        config=dict(model.config),
        sample_grid=sample_grid,
        animation=animation,
        animation_caption=animation_caption,
        metrics=rows,
        training=dict(training or {}),
        notes=notes,
        data_notice=data_notice,
        metric_curve=metric_curve,
        metric_history=[dict(row) for row in metric_history],
        memorization_note=memorization_note,
    )


def card_data(
    base: ModelCardData,
    *,
    model_name: str,
    rows: Sequence[Mapping[str, Any]] = (),
    datasets: Sequence[str] | str | None = None,
    base_model: str | None = None,
    gallery: Sequence[Mapping[str, Any]] = (),
) -> ModelCardData:
    """The class's metadata plus this card's: datasets, base model, model-index eval results, and the
    ``widget`` entries the Hub's ``<Gallery />`` component shows (the sample images)."""
    data = base.to_dict()
    if gallery:
        data["widget"] = [dict(item) for item in gallery]
    if datasets:
        data["datasets"] = [datasets] if isinstance(datasets, str) else list(datasets)
    if base_model_id(base_model):
        data["base_model"] = base_model_id(base_model)
        data["base_model_relation"] = "finetune"
    results = [result for row in rows if (result := eval_result(row)) is not None]
    if results:
        data["model_name"] = model_name
        data["eval_results"] = results
    return ModelCardData(**data)


def gallery_items(sample_grid: str | None, animation: str | None,
                  animation_caption: str | None = None) -> list[dict[str, Any]]:
    """The card's images as ``widget`` entries (``text`` + ``output.url``, a path in the repo): what the
    Hub's ``<Gallery />`` card component renders on the model page."""
    items = []
    if sample_grid:
        items.append({"text": "Samples from this model", "output": {"url": sample_grid}})
    if animation:
        items.append({"text": animation_caption or "Animation", "output": {"url": animation}})
    return items


def base_model_id(spec: str | None) -> str | None:
    """The Hub model id in a ``user/repo[@rev]`` spec; None for a local folder or anything else.

    The Hub refuses a card whose ``base_model`` is not a model id, so folders stay out.
    """
    if not spec or os.path.isdir(spec):
        return None
    repo_id = spec.rpartition("@")[0] if "@" in spec else spec
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return None
    return repo_id if repo_id.count("/") == 1 else None


def eval_result(row: Mapping[str, Any]) -> EvalResult | None:
    """A metrics row as a model-index entry, when it is FID or KID with a numeric value.

    Rows from :meth:`~dcgan_hf.scores.Scores.card_rows` carry ``type``, ``score``, ``dataset`` and ``args``; hand-written
    rows (``{"name": "FID", "value": "12.3"}``) are read from their name and the value's number.
    """
    kind = str(row.get("type") or str(row.get("name", "")).split(" ")[0]).lower()
    if kind not in METRIC_NAMES:
        return None
    score = row.get("score")
    if score is None:
        number = re.match(r"\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)", str(row.get("value", "")))
        if number is None:
            return None
        score = float(number.group(1))
    dataset = str(row.get("dataset") or "not recorded")
    return EvalResult(
        task_type=TASK,
        task_name="Unconditional Image Generation",
        dataset_type=row.get("dataset_type") or _slug(dataset),
        dataset_name=dataset,
        dataset_split=row.get("dataset_split"),
        dataset_revision=row.get("dataset_revision"),
        metric_type=kind,
        metric_name=str(row.get("name") or METRIC_NAMES[kind]),
        metric_value=round(float(score), 4),
        metric_config=str(row["protocol"]) if row.get("protocol") else None,
        metric_args=dict(row["args"]) if row.get("args") else None,
    )


def memorization_note(memorized: float | None, memorization_ratio: float | None, num_train: int | None,
                      flag: float) -> str | None:
    """The card's sentence on copies: CelebA may not be redistributed, and a copying model would redistribute it."""
    if memorized is None or memorization_ratio is None:
        return None
    verdict = ("**More samples than expected sit on training images: this model may reproduce training faces.**"
               if memorized > flag else "No sign of copied training images.")
    return (f"**Memorization check.** CelebA's terms forbid redistributing its images, and a generator that copies "
            f"training faces would do exactly that. For each generated sample we find its nearest of {num_train:,} "
            f"training images in Inception feature space: {memorized:.2%} of the samples are nearer a training image "
            f"than any held-out real face is, and their median nearest-training distance is {memorization_ratio:.2f}× "
            f"that of the held-out faces (< 1 means samples hug the training set). {verdict}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "images"

"""The model card (README.md) that ``save_pretrained`` writes beside the weights.

One template for every publisher (``save_pretrained``, ``train.py``'s Hub pushes and the
bundled model), so a card always carries the same metadata and the same sections.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from huggingface_hub import ModelCard

TAGS = ("dcgan", "gan", "unconditional-image-generation", "pytorch")

TEMPLATE = """---
{{ card_data }}
---

# {{ title | default("DCGAN 64×64", true) }}

A DCGAN {{ model_kind }} ([Radford et al., 2015]({{ paper_url }})) for 64×64 {{ "RGB" if config.nc == 3 else "single-channel" if config.nc == 1 else config.nc ~ "-channel" }} images,
saved with the `dcgan_hf` library as `config.json` + `model.safetensors`.

{% if sample_grid %}![Samples from this model]({{ sample_grid }})
{% endif %}{% if animation %}
![{{ animation_caption | default("Animation", true) }}]({{ animation }})
{% endif %}
## Use it
{% if model_kind == "generator" %}
```python
from dcgan_hf import Generator

G = Generator.from_pretrained("{{ repo_id | default('user/dcgan-celeba', true) }}")
images = G.sample(seeds=range(16))  # uint8 tensor (16, {{ config.nc }}, 64, 64), the same on every machine
```

or `python -m dcgan_hf generate --model {{ repo_id | default('user/dcgan-celeba', true) }} --seeds 0-15 --out grid.png`.
{% else %}
```python
from dcgan_hf import Discriminator

D = Discriminator.from_pretrained("{{ repo_id | default('user/dcgan-celeba', true) }}", subfolder="discriminator")
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
{% endfor %}{% else %}No metrics recorded yet (`python -m dcgan_hf.evaluate --model … --real …` computes FID and KID).
{% endif %}
## Training

{% if training %}| | |
|---|---|
{% for key, value in training.items() %}| {{ key }} | {{ value }} |
{% endfor %}{% else %}Not recorded.
{% endif %}{% if notes %}
{{ notes }}
{% endif %}
## Data and licence

{{ data_notice | default("Trained on CelebA, which its authors release for non-commercial research only. No training images are included in this repository; generated images depict no real person.", true) }}
"""


def render(
    model: Any,
    *,
    title: str | None = None,
    repo_id: str | None = None,
    sample_grid: str | None = None,
    animation: str | None = None,
    animation_caption: str | None = None,
    metrics: Sequence[Mapping[str, Any]] = (),
    training: Mapping[str, Any] | None = None,
    notes: str | None = None,
    data_notice: str | None = None,
) -> ModelCard:
    """Fill the template for ``model`` (a Generator or Discriminator).

    ``sample_grid``/``animation`` are paths inside the repo (a GIF for the latter); ``metrics`` rows are
    ``{"name", "value", "protocol"}``; ``training`` is shown as a two-column table.
    """
    info = type(model)._hub_mixin_info
    return ModelCard.from_template(
        card_data=info.model_card_data,
        template_str=info.model_card_template,
        title=title,
        model_kind="generator" if type(model).__name__ == "Generator" else "discriminator",
        paper_url=info.paper_url,
        repo_id=repo_id,
        config=dict(model.config),
        sample_grid=sample_grid,
        animation=animation,
        animation_caption=animation_caption,
        metrics=[dict(row) for row in metrics],
        training=dict(training or {}),
        notes=notes,
        data_notice=data_notice,
    )

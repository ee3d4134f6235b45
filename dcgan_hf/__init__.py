"""dcgan_hf: a DCGAN for 64×64 faces, shared as Hugging Face Hub models.

>>> from dcgan_hf import Generator
>>> G = Generator.from_pretrained("user/dcgan-celeba")  # or a local folder
>>> images = G.sample(seeds="0-15")                      # uint8 (16, 3, 64, 64)
>>> faces = G.sample(seeds="0-15", output="pil")         # 16 PIL images ("np": uint8 HWC arrays)
>>> make_grid(faces).save("grid.png")                    # one PIL image
>>> edited = G.sample(seeds="0-15", edit={"smile": 2})    # along the model's latent directions
"""

from . import _moved
from .directions import Directions
from .images import make_grid
from .latent import SEED_LIMIT, check_seed, check_truncation, latent, latents, parse_seeds
from .models import Discriminator, Generator, ModelLoadError
from .sampling import interpolate, interpolation_gif, render, sample
from .version import __version__


_moved.install()  # old module paths (dcgan_hf.hub_client, dcgan_hf.card, ...) keep working

__all__ = [
    "Directions",
    "Discriminator",
    "Generator",
    "ModelLoadError",
    "SEED_LIMIT",
    "check_seed",
    "check_truncation",
    "interpolate",
    "interpolation_gif",
    "latent",
    "latents",
    "make_grid",
    "parse_seeds",
    "render",
    "sample",
]

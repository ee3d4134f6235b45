"""Seeds, latents, interpolation paths and the batch-invariant sampling API."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan_hf import Generator, interpolate, interpolation_gif, latent, latents, parse_seeds, sample
from dcgan_hf import images as imaging
from dcgan_hf.latent import lerp, path, slerp


def vivid(G: Generator) -> Generator:
    """``G`` with vivid outputs, in eval mode: DCGAN's N(0, 0.02) init alone gives near-flat grey
    images (which would make pixel-equality checks trivially true), and default BN statistics
    would leave eval-mode BN folding untested."""
    with torch.no_grad():
        for module in G.modules():
            if isinstance(module, torch.nn.ConvTranspose2d):
                module.weight.mul_(1.5 / (0.02 * math.sqrt(4 * module.in_channels)))
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return G.eval()


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    G = vivid(Generator(ngf=16))
    spread = G.sample(range(4)).float().std().item()
    assert spread > 40, f"test generator too flat (std {spread:.1f})"
    return G


def test_parse_seeds():
    assert parse_seeds("0-3,42") == [0, 1, 2, 3, 42]
    assert parse_seeds(" 7 ") == [7]
    assert parse_seeds([1, 2]) == [1, 2]
    assert parse_seeds(5) == [5]
    assert parse_seeds("4294967295") == [2**32 - 1]
    assert parse_seeds("1 2") == [1, 2] and len(parse_seeds("0-15 42")) == 17  # spaces separate, as in the demo
    for bad, message in [("4294967296", "from 0 to 4294967295"), ("-1", "whole numbers and ranges"),
                         ("1-x", "whole numbers and ranges"), ("5-3", "backwards"), ("", "at least one seed"),
                         ([1.5], "whole number"), ([True], "whole number"), (range(2**32), "at most 4,096")]:
        with pytest.raises(ValueError, match=message):
            parse_seeds(bad)


def test_latent_is_a_pure_function_of_seed_and_nz():
    torch.manual_seed(123)
    a = latent(7, 100)
    torch.manual_seed(999)
    torch.randn(1000)  # the global RNG has no say
    assert torch.equal(a, latent(7, 100))
    assert not torch.equal(a, latent(8, 100))
    assert torch.equal(latents([3, 7], 100)[1], a)
    # pinned values: torch's CPU Mersenne-Twister normal stream for seed 0, the same on every machine
    assert torch.allclose(latent(0, 4), torch.tensor([1.5409961, -0.2934289, -2.1787894, 0.5684313]), atol=1e-6)


def test_sample_is_batch_invariant_and_deterministic(generator):
    batch = sample(generator, range(64))
    assert batch.dtype == torch.uint8 and batch.shape == (64, 3, 64, 64)
    for seed in (0, 7, 31, 63):
        assert torch.equal(sample(generator, [seed])[0], batch[seed])
    for count in (2, 3, 5, 7, 9, 13, 17, 33):  # sizes whose kernels could differ
        assert torch.equal(sample(generator, range(count)), batch[:count])
    assert torch.equal(sample(generator, "60-63,0"), torch.cat([batch[60:64], batch[:1]]))
    assert torch.equal(sample(generator, range(64)), batch)


def test_sample_restores_training_mode_and_ignores_global_rng(generator):
    generator.train()
    try:
        torch.manual_seed(1)
        first = sample(generator, [3])
        assert generator.training
        torch.manual_seed(2)
        assert torch.equal(sample(generator, [3]), first)
    finally:
        generator.eval()


def test_truncation_scales_z(generator):
    assert torch.equal(sample(generator, [5], truncation=1.0), sample(generator, [5]))
    assert not torch.equal(sample(generator, [5], truncation=0.5), sample(generator, [5]))
    with pytest.raises(ValueError, match="truncation"):
        sample(generator, [5], truncation=0)


def test_slerp_and_lerp_endpoints_and_midpoints():
    a, b = latent(1, 100), latent(2, 100)
    for fn in (slerp, lerp):
        assert torch.allclose(fn(a, b, 0.0), a, atol=1e-6) and torch.allclose(fn(a, b, 1.0), b, atol=1e-6)
    mid = slerp(a, b, 0.5)
    assert abs(mid.norm() - (a.norm() + b.norm()) / 2) < 1e-4  # stays at a typical radius
    assert torch.allclose(lerp(a, b, 0.5), (a + b) / 2, atol=1e-6)
    assert torch.allclose(slerp(a, a, 0.3), a, atol=1e-6)  # parallel vectors: no division by zero


def test_paths_hit_keyframes_exactly():
    keys = latents([1, 2, 3], 100)
    open_path = path(keys, 9)
    assert torch.equal(open_path[0], keys[0]) and torch.equal(open_path[4], keys[1])
    assert torch.equal(open_path[-1], keys[2])
    loop = path(keys, 6, closed=True)
    assert torch.equal(loop[0], keys[0]) and torch.equal(loop[2], keys[1]) and torch.equal(loop[4], keys[2])
    assert not torch.equal(loop[-1], keys[0])  # a loop stops one step short of its start
    with pytest.raises(ValueError, match="at least two seeds"):
        path(keys[:1], 5)
    with pytest.raises(ValueError, match="at least 2 frames"):
        path(keys, 1)
    with pytest.raises(ValueError, match="slerp' or 'lerp"):
        path(keys, 5, method="cubic")


def test_interpolation_endpoints_equal_plain_samples(generator):
    frames = interpolate(generator, [3, 7], 10)
    assert frames.shape == (10, 3, 64, 64)
    plain = sample(generator, [3, 7])
    assert torch.equal(frames[0], plain[0]) and torch.equal(frames[-1], plain[1])
    looped = interpolate(generator, "3,7,9", 12, closed=True, method="lerp")
    assert torch.equal(looped[0], plain[0]) and torch.equal(looped[4], plain[1])
    gif = interpolation_gif(frames)
    assert imaging.gif_frame_count(gif) == 10
    with Image.open(io.BytesIO(gif)) as image:
        image.seek(9)
        assert image.size == (64, 64)


def test_image_outputs_agree(generator):
    images = sample(generator, range(6))
    pils = imaging.to_pil(images)
    assert pils[2].size == (64, 64) and torch.equal(torch.from_numpy(np.array(pils[2])).permute(2, 0, 1), images[2])
    grid = imaging.grid(images, nrow=3, padding=2)
    assert grid.shape == (3, 2 + 2 * 66, 2 + 3 * 66)
    assert torch.equal(grid[:, 2:66, 2:66], images[0])
    png = imaging.png_bytes(imaging.grid_image(images))
    with Image.open(io.BytesIO(png)) as decoded:
        assert decoded.format == "PNG"
        assert torch.equal(torch.from_numpy(np.array(decoded.convert("RGB"))).permute(2, 0, 1),
                           imaging.grid(images))
    floats = torch.tensor([[-1.0, -0.99999, 0.0, 1.0]]).reshape(1, 1, 2, 2)
    assert imaging.to_uint8(floats).flatten().tolist() == [0, 0, 128, 255]
    with pytest.raises(ValueError, match="uint8"):
        imaging.to_pil(torch.zeros(1, 3, 4, 4))


def test_sample_outputs_pil_and_numpy_with_the_same_pixels(generator):
    tensor = generator.sample("0-4,42")
    assert tensor.dtype == torch.uint8 and tensor.shape == (6, 3, 64, 64)  # the default is unchanged
    faces = generator.sample("0-4,42", output="pil")
    assert isinstance(faces, list) and len(faces) == 6
    assert all(isinstance(face, Image.Image) and face.mode == "RGB" and face.size == (64, 64) for face in faces)
    arrays = generator.sample("0-4,42", output="np")
    assert isinstance(arrays, np.ndarray) and arrays.dtype == np.uint8 and arrays.shape == (6, 64, 64, 3)
    expected = tensor.permute(0, 2, 3, 1).numpy()
    assert np.array_equal(arrays, expected)
    assert all(np.array_equal(np.asarray(face), array) for face, array in zip(faces, expected))
    assert torch.equal(generator.sample("0-4,42", output="pt"), tensor)
    frames = generator.interpolate([3, 7], frames=5, output="pil")
    assert len(frames) == 5 and np.array_equal(np.asarray(frames[0]), expected[3])
    assert interpolate(generator, [3, 7], 5, output="np").shape == (5, 64, 64, 3)
    with pytest.raises(ValueError, match="output must be one of 'pt', 'pil', 'np', got 'jpeg'"):
        generator.sample("0-3", output="jpeg")


def test_make_grid_takes_every_output_form(generator):
    from dcgan_hf import make_grid

    tensor = generator.sample("0-5")
    expected = np.asarray(imaging.grid_image(tensor, nrow=3))
    for form in (tensor, generator.sample("0-5", output="pil"), generator.sample("0-5", output="np"),
                 list(generator.sample("0-5", output="np"))):
        grid = make_grid(form, nrow=3)
        assert isinstance(grid, Image.Image) and grid.size == (3 * 66 + 2, 2 * 66 + 2)
        assert np.array_equal(np.asarray(grid), expected)
    assert make_grid(generator.sample("0-15", output="pil")).size == (4 * 66 + 2, 4 * 66 + 2)  # near-square
    single = make_grid(generator.sample("7", output="pil")[0])
    assert single.size == (64, 64)  # one image: torchvision returns it unpadded
    grey = [Image.new("L", (64, 64), 128)] * 2
    assert np.asarray(make_grid(grey)).shape == (68, 134, 3)  # single-channel: torchvision repeats it to RGB
    with pytest.raises(ValueError, match="zero images"):
        make_grid([])
    with pytest.raises(ValueError, match="same size"):
        make_grid([Image.new("RGB", (64, 64)), Image.new("RGB", (32, 32))])
    with pytest.raises(ValueError, match="expected uint8"):
        make_grid(np.zeros((2, 64, 64, 3), dtype=np.float32))

"""Your face in latent space, in-process: the photo checks, the projection, latent tokens.

The networks are small random ones made here (never the bundled model's pixels). A
generator's own sample is a target with a known answer: the projection must find a latent
that redraws it almost exactly, and the token handed out must redraw the same pixels.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan_hf import Discriminator, Generator, render
from dcgan_hf import latent_token
from dcgan_hf.photos import MAX_BYTES, PhotoError, load_photo, photo_from_file, sniff_format
from dcgan_hf.projection import ProjectionSettings, Projector, pixel_error, project
from hostile_images import encoded, face_like, hostile_files, one_bit_png, png_header_only
from test_app import make_model_folder

FAST = ProjectionSettings(steps=60)


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Generator:
    return Generator.from_pretrained(make_model_folder(tmp_path_factory.mktemp("projection") / "model"))


# -- photos ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP"])
def test_photos_are_cropped_and_resized_like_the_training_data(kind: str) -> None:
    from dcgan_hf.decoding import decode

    data = encoded(face_like(300, 400), kind, **({"quality": 95} if kind != "PNG" else {}))
    photo = load_photo(data)
    assert photo.size == (300, 400) and photo.pixels.shape == (3, 64, 64) and photo.pixels.dtype == torch.uint8
    # the same transform the training cache applies (short side → 64, centre crop)
    assert torch.equal(photo.pixels, torch.from_numpy(decode(data, 64).copy()).permute(2, 0, 1))


def test_transparent_photos_are_composited_on_white() -> None:
    image = face_like(200, 200).convert("RGBA")
    image.putalpha(0)  # fully transparent
    photo = load_photo(encoded(image, "PNG"))
    assert int(photo.pixels.min()) == 255


def test_exif_rotation_is_applied() -> None:
    image = face_like(200, 300)  # portrait
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: "rotate 90° clockwise to view"
    photo = load_photo(encoded(image.rotate(90, expand=True), "JPEG", exif=exif, quality=95))
    assert photo.size == (300, 200)  # the header's size; the crop is of the upright image
    upright = load_photo(encoded(image, "JPEG", quality=95)).pixels.float()
    assert (photo.pixels.float() - upright).abs().mean() < 6  # JPEG noise only, not a rotated face


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("text.jpg", "not an image we can read"),
        ("truncated.jpg", "truncated or damaged"),
        ("bomb.png", "far too many pixels"),
        ("sliver.png", "1×300000 pixels"),
        ("garbage.png", "not a readable PNG"),
    ],
)
def test_hostile_files_get_one_clear_message(tmp_path: Path, name: str, message: str) -> None:
    path = hostile_files(tmp_path)[name]
    with pytest.raises(PhotoError, match=message):
        photo_from_file(path)


def test_sizes_are_judged_from_the_header_before_decoding() -> None:
    with pytest.raises(PhotoError, match="8000×8000 pixels; photos may have at most 40 megapixels"):
        load_photo(one_bit_png(8000, 8000))  # 64 MP: under PIL's own bomb limit, over ours
    with pytest.raises(PhotoError, match="at least 32 pixels a side"):
        load_photo(encoded(face_like(20, 20), "PNG"))
    with pytest.raises(PhotoError, match="too narrow"):
        load_photo(one_bit_png(100, 2000))


def test_uploads_and_training_images_are_judged_by_one_header_check() -> None:
    """The same pixel bound and the same decompression-bomb handling for both; only the shape differs."""
    from dcgan_hf.decoding import ImageSizeError, decode

    with pytest.raises(ImageSizeError, match="8000×8000 pixels; training images may have at most 40 megapixels"):
        decode(one_bit_png(8000, 8000), 64)
    bomb = one_bit_png(20_000, 20_000)  # past PIL's own limit
    with pytest.raises(ImageSizeError, match="far too many pixels") as training:
        decode(bomb, 64)
    with pytest.raises(PhotoError, match="far too many pixels") as upload:
        load_photo(bomb)
    assert str(training.value) == str(upload.value)
    assert decode(one_bit_png(100, 1000), 64).shape == (64, 64, 3)  # 10:1 is a training image, not a photo
    with pytest.raises(PhotoError, match=r"too narrow \(photos may be at most 4:1\)"):
        load_photo(one_bit_png(100, 1000))


def test_photos_too_costly_to_decode_whole_are_refused_from_the_header() -> None:
    # 6300×6300 RGBA: ~200 KB of PNG, within 10 MB and 40 megapixels, but 150 MB of pixels once decoded
    # (and as much again to shrink it); PNG and WebP have no reduced decoding, so the header decides
    with pytest.raises(PhotoError, match=r"the PNG is 6300×6300 pixels: decoding it would take 303 MB, and a photo "
                                         r"may take at most 80 MB; a smaller one, or a JPEG, works"):
        load_photo(png_header_only(6300, 6300, colour_type=6))  # the header is all that is read
    with pytest.raises(PhotoError, match=r"the WebP is 2400×2400 pixels: decoding it would take 88 MB"):
        load_photo(encoded(Image.new("RGB", (2400, 2400), (200, 150, 120)), "WEBP"))
    # a JPEG of the same size decodes at 1/8 scale in the decoder itself: accepted
    assert load_photo(encoded(Image.new("RGB", (6300, 6300), (200, 150, 120)), "JPEG")).size == (6300, 6300)


@pytest.mark.parametrize("kind, mode", [("PNG", "RGBA"), ("PNG", "P"), ("WEBP", "RGB"), ("JPEG", "RGB")])
def test_big_photos_are_shrunk_first_and_framed_as_the_full_decode_would(kind: str, mode: str) -> None:
    from dcgan_hf.decoding import decode

    image = face_like(1200, 1600)
    data = encoded(image.convert(mode), kind, **({"quality": 95} if kind != "PNG" else {}))
    photo = load_photo(data)
    assert photo.size == (1200, 1600) and max(Image.open(io.BytesIO(photo.preview_jpeg)).size) == 256
    full = torch.from_numpy(decode(encoded(image, "PNG"), 64).copy()).permute(2, 0, 1)
    assert (photo.pixels.float() - full.float()).abs().mean() < 4  # the same framing; shrinking costs no detail


def test_oversized_files_are_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    with big.open("wb") as handle:
        handle.truncate(MAX_BYTES + 1)  # sparse: nothing is written or read
    with pytest.raises(PhotoError, match="at most 10 MB"):
        photo_from_file(big)


def test_format_sniffing() -> None:
    assert sniff_format(encoded(face_like(40, 40), "WEBP")[:16]) == "WEBP"
    assert sniff_format(b"GIF89a" + bytes(10)) is None
    assert sniff_format(b"%PDF-1.7") is None


# -- latent tokens ------------------------------------------------------------------------------


def test_tokens_round_trip_and_are_compact() -> None:
    z = torch.randn(100, generator=torch.Generator().manual_seed(0))
    token = latent_token.encode(z)
    assert token.startswith("z1.") and len(token) == 270
    assert torch.equal(latent_token.decode(token, 100), latent_token.quantize(z))
    assert latent_token.decode(f"  {token}\n", 100).shape == (100,)


def raw_token(values: np.ndarray) -> str:
    """A well-formed token around any float16 values (encode() itself clamps, so build it by hand)."""
    return "z1." + base64.urlsafe_b64encode(values.astype("<f2").tobytes()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (12345, "must be text"),
        ("z1." + "A" * 5000, "too long"),
        ("hello", "must start with 'z1.'"),
        ("z1.not base64!", "not base64url"),
        ("z1.AAAA", "odd byte count"),
        (latent_token.encode(torch.zeros(64)), "nz=100"),
        (raw_token(np.full(100, np.inf)), "non-finite"),
        (raw_token(np.full(100, np.nan)), "non-finite"),
        (raw_token(np.full(100, 20.0)), "beyond ±16"),
    ],
)
def test_hostile_tokens_are_refused_with_a_message(token: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        latent_token.decode(token, 100)


# -- projection ---------------------------------------------------------------------------------


def test_projecting_a_generated_face_finds_it_again(generator: Generator) -> None:
    target = generator.sample([5])[0]
    start = project(generator, target, settings=ProjectionSettings(steps=0))  # the best seeded candidate
    result = project(generator, target, settings=ProjectionSettings(steps=150))
    assert result.psnr > 35 and result.psnr > start.psnr + 10
    assert result.mse == pytest.approx(pixel_error(result.image, target))
    assert math.isclose(result.psnr, 10 * math.log10(1 / result.mse))
    # the token holds exactly the latent that drew the reconstruction
    z = latent_token.decode(latent_token.encode(result.z), generator.nz)
    assert torch.equal(render(generator, z[None])[0], result.image)


def test_projection_is_deterministic_and_leaves_the_networks_alone(generator: Generator) -> None:
    target = load_photo(encoded(face_like(), "PNG")).pixels
    discriminator = Discriminator(ndf=8)  # in training mode, as constructed
    before = {key: value.clone() for key, value in generator.state_dict().items()}
    generator.train()  # whatever mode the caller left it in is restored
    first = project(generator, target, discriminator, FAST)
    assert generator.training and discriminator.training  # both as the caller left them
    generator.eval()
    second = project(generator, target, discriminator, FAST)
    assert torch.equal(first.z, second.z) and first.used_discriminator
    assert all(torch.equal(value, generator.state_dict()[key]) for key, value in before.items())
    assert all(parameter.grad is None for parameter in generator.parameters())
    assert not torch.equal(project(generator, target, None, FAST).z, first.z)  # the feature loss matters


def test_projection_runs_in_slices(generator: Generator) -> None:
    target = generator.sample([9])[0]
    sliced = Projector(generator, target, settings=FAST)
    turns = 0
    while not sliced.run(7):
        turns += 1
    assert turns == 8 and sliced.steps_done == 60
    assert torch.equal(sliced.result().z, project(generator, target, settings=FAST).z)


def test_projection_refuses_a_mismatched_target(generator: Generator) -> None:
    with pytest.raises(ValueError, match="target must be uint8"):
        Projector(generator, torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unusable projection settings"):
        ProjectionSettings(steps=-1)


def test_a_server_out_of_time_returns_the_best_latent_so_far(generator: Generator) -> None:
    """The demo's ≤ 5 s promise holds on a busy machine: the projection stops at its time limit."""
    from dcgan_hf.photos import Photo
    from dcgan_hf.serving import PROJECTION_SLICE, ModelServer

    photo = Photo(generator.sample([11])[0], (64, 64), "PNG")
    server = ModelServer.serve(generator, "cpu")
    try:
        hurried = server.project(photo, FAST, seconds=0.0)
        patient = server.project(photo, FAST)
    finally:
        server.close()
    assert hurried.result.steps == PROJECTION_SLICE < FAST.steps  # one slice, then the clock stopped it
    assert patient.result.steps == FAST.steps
    assert patient.result.mse <= hurried.result.mse
    # the token still reproduces exactly the reconstruction that was shown
    z = latent_token.decode(hurried.token, generator.nz)
    assert torch.equal(render(generator, z[None])[0], hurried.result.image)

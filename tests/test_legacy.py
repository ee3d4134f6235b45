"""Legacy checkpoint import: each format is made on the fly by the network its authors
wrote, converted, reloaded with ``from_pretrained``, and must compute the same outputs."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dcgan_hf import Discriminator, Generator, ModelLoadError
from dcgan_hf.convert import convert, main
from dcgan_hf.legacy import UnsafeCheckpointError, read_legacy


# ── The legacy networks, as their authors wrote them (module-level nz/ngf/nc → arguments) ──


class ExamplesGenerator(nn.Module):
    """pytorch/examples dcgan/main.py (the DCGAN tutorial's Generator differs only in forward on multi-GPU)."""

    def __init__(self, ngpu: int, nz: int, ngf: int, nc: int) -> None:
        super().__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.is_cuda and self.ngpu > 1:
            return nn.parallel.data_parallel(self.main, input, range(self.ngpu))
        return self.main(input)


class ExamplesDiscriminator(nn.Module):
    """pytorch/examples dcgan/main.py: returns the probability of "real", shape (N,)."""

    def __init__(self, ngpu: int, nc: int, ndf: int) -> None:
        super().__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.is_cuda and self.ngpu > 1:
            output = nn.parallel.data_parallel(self.main, input, range(self.ngpu))
        else:
            output = self.main(input)
        return output.view(-1, 1).squeeze(1)


class TutorialDiscriminator(ExamplesDiscriminator):
    """The PyTorch DCGAN tutorial's: same layers, output left at shape (N, 1, 1, 1)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.main(input)


class HugGANGenerator(nn.Module):
    """huggingface/community-events huggan/pytorch/dcgan/modeling_dcgan.py (minus the Hub mixin)."""

    def __init__(self, num_channels: int = 3, latent_dim: int = 100, hidden_size: int = 64) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, hidden_size * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(hidden_size * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(hidden_size * 8, hidden_size * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(hidden_size * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(hidden_size * 4, hidden_size * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(hidden_size * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(hidden_size * 2, hidden_size, 4, 2, 1, bias=False),
            nn.BatchNorm2d(hidden_size),
            nn.ReLU(True),
            nn.ConvTranspose2d(hidden_size, num_channels, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.model(noise)


class CreatesFileWhenUnpickled:
    """A pickle payload that would create ``marker`` if anyone unpickled it unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ── Helpers ──


@pytest.fixture(autouse=True, scope="module")
def one_cpu_thread():
    """These models are tiny: with several threads on a busy shared CPU, each op waits on the others."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomised(module: nn.Module, seed: int) -> nn.Module:
    """Random weights and BN running stats (so eval-mode BN matters), then eval mode."""
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(int(torch.randint(1, 1000, (), generator=rng)))
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=rng) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=rng) * 0.1)
            elif tensor.dim() == 1:  # BN scale
                tensor.copy_(1 + torch.randn(tensor.shape, generator=rng) * 0.1)
            else:  # conv kernels, scaled by fan so activations neither vanish nor saturate
                tensor.copy_(torch.randn(tensor.shape, generator=rng) * (2 / tensor[0].numel()) ** 0.5)
    return module.eval()


def noise(count: int, nz: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, nz, 1, 1, generator=torch.Generator().manual_seed(seed))


def images(count: int, nc: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, nc, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def assert_same_generator(legacy: nn.Module, folder: Path, nz: int) -> Generator:
    converted = Generator.from_pretrained(folder)
    z = noise(3, nz)
    with torch.no_grad():
        expected, actual = legacy(z), converted(z)
    assert expected.std() > 0.05, "the legacy output is degenerate, so equality would prove little"
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)
    return converted


def assert_same_discriminator(legacy: nn.Module, folder: Path, nc: int) -> Discriminator:
    converted = Discriminator.from_pretrained(folder)
    x = images(4, nc)
    with torch.no_grad():
        probability, logits = legacy(x).flatten(), converted(x)
    assert probability.std() > 1e-3, "the legacy output is degenerate, so equality would prove little"
    torch.testing.assert_close(torch.sigmoid(logits), probability, rtol=0, atol=1e-6)
    return converted


def examples_pair(folder: Path, *, epoch: int, nz: int, nc: int, ngf: int = 8, ndf: int = 8):
    """Save netG_epoch_N.pth / netD_epoch_N.pth as pytorch/examples' main.py does."""
    netG = randomised(ExamplesGenerator(1, nz, ngf, nc), seed=1)
    netD = randomised(ExamplesDiscriminator(1, nc, ndf), seed=2)
    torch.save(netG.state_dict(), folder / f"netG_epoch_{epoch}.pth")
    torch.save(netD.state_dict(), folder / f"netD_epoch_{epoch}.pth")
    return netG, netD


# ── Formats ──


def test_tutorial_checkpoint_from_dataparallel_at_ngf_128(tmp_path: Path) -> None:
    netG = nn.DataParallel(randomised(ExamplesGenerator(2, nz=100, ngf=128, nc=3), seed=3))
    netD = nn.DataParallel(randomised(TutorialDiscriminator(2, nc=3, ndf=128), seed=4))
    assert next(iter(netG.state_dict())).startswith("module.main.")
    src = tmp_path / "checkpoint.pt"
    torch.save({"g_model_state_dict": netG.state_dict(), "d_model_state_dict": netD.state_dict(), "epoch": 7}, src)

    written = convert(src, tmp_path / "out")

    assert written == [tmp_path / "out", tmp_path / "out" / "discriminator"]
    G = assert_same_generator(netG, tmp_path / "out", nz=100)
    D = assert_same_discriminator(netD, tmp_path / "out" / "discriminator", nc=3)
    assert G.config == {"nz": 100, "ngf": 128, "nc": 3} and D.config == {"nc": 3, "ndf": 128}
    card = (tmp_path / "out" / "README.md").read_text()
    assert "checkpoint.pt" in card and "| epoch | 7 |" in card


def test_tutorial_checkpoint_without_module_prefix(tmp_path: Path) -> None:
    netG = randomised(ExamplesGenerator(1, nz=100, ngf=8, nc=3), seed=5)
    netD = randomised(TutorialDiscriminator(1, nc=3, ndf=8), seed=6)
    src = tmp_path / "dcgan.pth"
    torch.save({"g_model_state_dict": netG.state_dict(), "d_model_state_dict": netD.state_dict(), "epoch": 2}, src)

    checkpoint = read_legacy(src)
    convert(src, tmp_path / "out")

    assert (checkpoint.format, checkpoint.epoch) == ("tutorial", 2)
    assert_same_generator(netG, tmp_path / "out", nz=100)
    assert_same_discriminator(netD, tmp_path / "out" / "discriminator", nc=3)


@pytest.mark.parametrize(
    ("nz", "nc", "named"),
    [(100, 3, "netG"), (128, 1, "netD")],
    ids=["nz100-rgb-from-netG", "nz128-gray-from-netD"],
)
def test_pytorch_examples_pair(tmp_path: Path, nz: int, nc: int, named: str) -> None:
    netG, netD = examples_pair(tmp_path, epoch=24, nz=nz, nc=nc)

    checkpoint = read_legacy(tmp_path / f"{named}_epoch_24.pth")
    written = convert(tmp_path / f"{named}_epoch_24.pth", tmp_path / "out")

    assert (checkpoint.format, checkpoint.epoch) == ("pytorch/examples", 24)
    assert written == [tmp_path / "out", tmp_path / "out" / "discriminator"]
    G = assert_same_generator(netG, tmp_path / "out", nz=nz)
    assert_same_discriminator(netD, tmp_path / "out" / "discriminator", nc=nc)
    assert G.config == {"nz": nz, "ngf": 8, "nc": nc}


def test_lone_netD_fills_only_the_discriminator_folder(tmp_path: Path) -> None:
    _, netD = examples_pair(tmp_path, epoch=3, nz=100, nc=3)
    (tmp_path / "netG_epoch_3.pth").unlink()

    written = convert(tmp_path / "netD_epoch_3.pth", tmp_path / "out")

    assert written == [tmp_path / "out" / "discriminator"]
    assert_same_discriminator(netD, tmp_path / "out" / "discriminator", nc=3)
    with pytest.raises(ModelLoadError, match="config.json is missing"):
        Generator.from_pretrained(tmp_path / "out")


def test_huggan_model_keys(tmp_path: Path) -> None:
    legacy = randomised(HugGANGenerator(num_channels=3, latent_dim=64, hidden_size=8), seed=7)
    assert next(iter(legacy.state_dict())).startswith("model.")
    (tmp_path / "huggan").mkdir()
    src = tmp_path / "huggan" / "pytorch_model.bin"
    torch.save(legacy.state_dict(), src)

    written = convert(src, tmp_path / "out")

    assert read_legacy(src).format == "huggan" and written == [tmp_path / "out"]
    assert assert_same_generator(legacy, tmp_path / "out", nz=64).config == {"nz": 64, "ngf": 8, "nc": 3}


def test_bare_state_dicts_of_our_own_models(tmp_path: Path) -> None:
    ours_G = randomised(Generator(nz=32, ngf=8, nc=3), seed=8)
    ours_D = randomised(Discriminator(nc=3, ndf=16), seed=9)
    torch.save(nn.DataParallel(nn.DataParallel(ours_G)).state_dict(), tmp_path / "g.pt")  # module.module.
    torch.save(ours_D.state_dict(), tmp_path / "d.pt")

    assert convert(tmp_path / "g.pt", tmp_path / "G") == [tmp_path / "G"]
    assert convert(tmp_path / "d.pt", tmp_path / "D") == [tmp_path / "D" / "discriminator"]

    G = Generator.from_pretrained(tmp_path / "G")
    D = Discriminator.from_pretrained(tmp_path / "D" / "discriminator")
    z, x = noise(3, 32), images(2, 3)
    with torch.no_grad():
        assert torch.equal(G(z), ours_G(z)) and torch.equal(D(x), ours_D(x))
    assert read_legacy(tmp_path / "d.pt").format == "state_dict"


def test_very_old_checkpoint_without_num_batches_tracked(tmp_path: Path) -> None:
    netG, _ = examples_pair(tmp_path, epoch=0, nz=100, nc=3)
    old_state = {k: v for k, v in netG.state_dict().items() if not k.endswith("num_batches_tracked")}
    src = tmp_path / "old" / "netG_epoch_0.pth"
    src.parent.mkdir()
    torch.save(old_state, src, _use_new_zipfile_serialization=False)  # pre-1.6 file layout

    assert convert(src, tmp_path / "out") == [tmp_path / "out"]
    assert_same_generator(netG, tmp_path / "out", nz=100)


# ── Refusals and bad input ──


def _save_with_torch(payload: object, path: Path) -> None:
    torch.save(payload, path)


def _save_with_pickle_protocol_4(payload: object, path: Path) -> None:
    path.write_bytes(pickle.dumps(payload, protocol=4))


@pytest.mark.parametrize(
    ("save", "error", "message"),
    [
        (_save_with_torch, UnsafeCheckpointError, r"refused: it contains the Python object .*open"),
        (_save_with_pickle_protocol_4, ModelLoadError, r"refused: not a file that torch.load\(weights_only=True\)"),
    ],
    ids=["torch.save", "plain-pickle"],
)
def test_arbitrary_object_is_refused_and_never_executed(tmp_path: Path, save, error, message: str) -> None:
    marker = tmp_path / "marker"
    netG = randomised(ExamplesGenerator(1, nz=100, ngf=8, nc=3), seed=10)
    src = tmp_path / "evil.pt"
    save({"g_model_state_dict": netG.state_dict(), "epoch": CreatesFileWhenUnpickled(marker)}, src)

    with pytest.raises(error, match=message):
        convert(src, tmp_path / "out")

    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_whole_pickled_model_is_refused_with_advice(tmp_path: Path) -> None:
    src = tmp_path / "netG.pt"
    torch.save(randomised(ExamplesGenerator(1, nz=100, ngf=8, nc=3), seed=11), src)

    with pytest.raises(UnsafeCheckpointError, match=r"ExamplesGenerator.*state_dict\(\)"):
        read_legacy(src)


def _truncated(tmp_path: Path) -> Path:
    whole = tmp_path / "whole.pt"
    torch.save(Generator(nz=8, ngf=8).state_dict(), whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return cut


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n" * 20)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_truncated, "not a readable PyTorch checkpoint"),
        (_text_file, "not a readable PyTorch checkpoint"),
        (lambda tmp_path: tmp_path / "absent.pt", "no such checkpoint file"),
        (lambda tmp_path: tmp_path, "no such checkpoint file .it is a folder"),
    ],
    ids=["truncated", "not-a-checkpoint", "missing", "folder"],
)
def test_unreadable_files_are_clear_errors(tmp_path: Path, make, message: str) -> None:
    src = make(tmp_path)
    with pytest.raises(ModelLoadError, match=message):
        convert(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"generator": {"weight": torch.zeros(1)}, "step": 3}, r"top-level keys \['generator', 'step'\]"),
        (nn.Linear(4, 2).state_dict(), r"not a DCGAN generator or discriminator.*\['bias', 'weight'\]"),
        ([torch.zeros(3)], "holds a list"),
        ({"g_model_state_dict": [1, 2]}, "g_model_state_dict holds a list"),
    ],
    ids=["unknown-dict", "other-network", "list", "tutorial-key-not-a-dict"],
)
def test_wrong_contents_are_clear_errors(tmp_path: Path, payload, message: str) -> None:
    torch.save(payload, tmp_path / "odd.pt")
    with pytest.raises(ModelLoadError, match=message):
        convert(tmp_path / "odd.pt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_layers_that_do_not_chain_name_the_key(tmp_path: Path) -> None:
    state = Generator(nz=16, ngf=8).state_dict()
    state["main.6.weight"] = torch.zeros(32, 12, 4, 4)  # should be (4·ngf, 2·ngf, 4, 4) = (32, 16, 4, 4)
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ModelLoadError, match=r"main\.6\.weight: expected \(32, 16, 4, 4\), got \(32, 12, 4, 4\)"):
        read_legacy(tmp_path / "broken.pt")


def test_pair_with_mismatched_channels_is_refused(tmp_path: Path) -> None:
    torch.save(Generator(nz=16, ngf=8, nc=3).state_dict(), tmp_path / "netG_epoch_1.pth")
    torch.save(Discriminator(nc=1, ndf=8).state_dict(), tmp_path / "netD_epoch_1.pth")
    with pytest.raises(ModelLoadError, match="nc=3 images but the discriminator .* takes nc=1"):
        read_legacy(tmp_path / "netG_epoch_1.pth")


def test_examples_name_that_contradicts_the_contents_is_refused(tmp_path: Path) -> None:
    torch.save(Discriminator(nc=3, ndf=8).state_dict(), tmp_path / "netG_epoch_2.pth")
    with pytest.raises(ModelLoadError, match="the name says netG but it holds a discriminator"):
        read_legacy(tmp_path / "netG_epoch_2.pth")


def test_non_empty_out_dir_is_kept_unless_overwrite(tmp_path: Path) -> None:
    netG, _ = examples_pair(tmp_path, epoch=5, nz=100, nc=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    with pytest.raises(FileExistsError, match="not empty"):
        convert(tmp_path / "netG_epoch_5.pth", out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    # --overwrite replaces only what convert wrote: a folder with anything else is refused, untouched
    with pytest.raises(FileExistsError, match=r"files convert did not write \(keep.txt\)"):
        convert(tmp_path / "netG_epoch_5.pth", out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    (out / "keep.txt").unlink()
    convert(tmp_path / "netG_epoch_5.pth", out)
    convert(tmp_path / "netG_epoch_5.pth", out, overwrite=True)  # its own output: replaced
    assert_same_generator(netG, out, nz=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["netD_epoch_5.pth", "netG_epoch_5.pth", "out"]


def test_overwrite_never_deletes_the_source(tmp_path: Path) -> None:
    examples_pair(tmp_path, epoch=5, nz=100, nc=3)
    with pytest.raises(ValueError, match="holds the checkpoint being converted"):
        convert(tmp_path / "netG_epoch_5.pth", tmp_path, overwrite=True)
    assert (tmp_path / "netG_epoch_5.pth").is_file()


def test_convert_removes_only_the_temporaries_it_names_itself(tmp_path: Path) -> None:
    netG, _ = examples_pair(tmp_path, epoch=5, nz=100, nc=3)
    mine = tmp_path / ".out.tmp-mywork"  # someone's folder that merely looks like a temporary
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    (tmp_path / ".out.old-x-99999999999999999999999").mkdir()  # a "pid" no process can have
    convert(tmp_path / "netG_epoch_5.pth", tmp_path / "out")
    convert(tmp_path / "netG_epoch_5.pth", tmp_path / "out", overwrite=True)
    assert (mine / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.old-x-99999999999999999999999", ".out.tmp-mywork",
                                                          "netD_epoch_5.pth", "netG_epoch_5.pth", "out"]
    assert_same_generator(netG, tmp_path / "out", nz=100)


# ── Command line ──


def test_cli_converts_a_pair(tmp_path: Path, repo_root: Path) -> None:
    netG, netD = examples_pair(tmp_path, epoch=9, nz=100, nc=3)
    result = subprocess.run(
        [sys.executable, "-m", "dcgan_hf", "convert", str(tmp_path / "netG_epoch_9.pth"), str(tmp_path / "out")],
        cwd=repo_root, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "pytorch/examples checkpoint, epoch 9" in result.stdout
    assert "nz=100 ngf=8 nc=3" in result.stdout and "nc=3 ndf=8" in result.stdout
    assert str(tmp_path / "out" / "discriminator") in result.stdout
    assert_same_generator(netG, tmp_path / "out", nz=100)
    assert_same_discriminator(netD, tmp_path / "out" / "discriminator", nc=3)


def test_cli_errors_exit_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "evil.pt"
    torch.save({"epoch": CreatesFileWhenUnpickled(tmp_path / "marker")}, src)

    assert main([str(src), str(tmp_path / "out")]) == 2

    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "refused" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "marker").exists() and not (tmp_path / "out").exists()

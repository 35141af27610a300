"""Issue: the generator loads the official checkpoints strictly, from every form users hold, and
matches golden_wav2lip (official Wav2Lip() forward with deterministic weights)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsynckit.errors import WeightsError
from lipsynckit_wav2lip.network import Wav2LipNet, count_parameters
from lipsynckit_wav2lip.plugin import plugin, plugin_gan
from lipsynckit_wav2lip.runtime import Wav2LipModel

from w2l_helpers import golden, load_model, manifest, save_s3fd, save_training_checkpoint, state_dict


@pytest.fixture(scope="module")
def weights_dir(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("w2l_forms")


@pytest.fixture(scope="module")
def training_ckpt(weights_dir: Path) -> Path:
    return save_training_checkpoint(weights_dir / "wav2lip.pth")


def _check_golden(model: Wav2LipModel, full: bool = False) -> None:
    g = golden("golden_wav2lip")
    mel, face = torch.from_numpy(g["mel"]), torch.from_numpy(g["face"])
    with torch.no_grad():
        out = model.net(mel, face)
        if full:
            logits = model.net.logits(mel, face)
            emb = model.net.audio_encoder(mel)
    np.testing.assert_allclose(out.numpy(), g["out"], atol=1e-5, rtol=0)
    if full:
        np.testing.assert_allclose(logits.numpy(), g["logits"], atol=2e-5, rtol=0)
        np.testing.assert_allclose(emb.numpy(), g["audio_embedding"], atol=1e-5, rtol=0)


def _check_same_weights(model: Wav2LipModel) -> None:
    """Every tensor loaded equals the deterministic one (cheaper than a forward, and stricter)."""
    want = state_dict("wav2lip")
    got = model.net.state_dict()
    assert list(got) == list(want)
    for k, v in want.items():
        assert torch.equal(got[k], v), k


def test_names_shapes_and_count_match_the_official_manifest(reference_dir: Path) -> None:
    net = Wav2LipNet()
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert list(got.items()) == list(manifest("wav2lip").items())  # names, shapes and official order
    assert count_parameters(net) == 36_298_035


def test_official_training_checkpoint_matches_golden(training_ckpt: Path) -> None:
    model = load_model(plugin, weights=training_ckpt)
    assert isinstance(model, Wav2LipModel)
    assert not model.net.training  # BN uses running statistics, as in official inference
    _check_same_weights(model)
    _check_golden(model, full=True)


def test_5d_training_path_equals_the_4d_path(training_ckpt: Path) -> None:
    g = golden("golden_wav2lip")
    model = load_model(plugin, weights=training_ckpt)
    mel = torch.from_numpy(g["mel"])  # (2,1,80,16)
    face = torch.from_numpy(g["face"])  # (2,6,96,96)
    mel5 = torch.stack([mel, mel.flip(0)], dim=1)  # (B,T,1,80,16)
    face5 = torch.stack([face, face.flip(0)], dim=2)  # (B,6,T,96,96)
    with torch.no_grad():
        out5 = model.net(mel5, face5)
    assert out5.shape == (2, 3, 2, 96, 96)
    np.testing.assert_allclose(out5[:, :, 0].numpy(), g["out"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out5[:, :, 1].flip(0).numpy(), g["out"], atol=1e-5, rtol=0)


def test_torchscript_archive_loads_through_the_user_loader(weights_dir: Path) -> None:
    net = Wav2LipNet().eval()
    net.load_state_dict(state_dict("wav2lip"))
    scripted = torch.jit.script(net)
    path = weights_dir / "Wav2Lip-SD-NOGAN.pt"
    scripted.save(str(path))
    with pytest.raises(Exception):  # noqa: B017 - what users hit with torch.load (issue #743)
        torch.load(path, weights_only=True)
    model = load_model(plugin, weights=path)
    _check_same_weights(model)
    _check_golden(model)
    # found by name in a folder that only holds the TorchScript file
    only_pt = weights_dir / "only_pt"
    only_pt.mkdir()
    (only_pt / path.name).write_bytes(path.read_bytes())
    assert plugin.find_generator(only_pt) == only_pt / path.name


def test_traced_archive_and_bare_and_safetensors_forms(weights_dir: Path) -> None:
    from safetensors.torch import save_file

    net = Wav2LipNet().eval()
    net.load_state_dict(state_dict("wav2lip"))
    g = golden("golden_wav2lip")
    example = (torch.from_numpy(g["mel"][:1]), torch.from_numpy(g["face"][:1]))
    traced = torch.jit.trace(net, example, check_trace=False)
    traced.save(str(weights_dir / "traced.pt"))
    torch.save(state_dict("wav2lip"), weights_dir / "bare.pth")
    save_file(
        {k: v.contiguous() for k, v in state_dict("wav2lip").items()}, str(weights_dir / "w.safetensors")
    )
    for name in ("traced.pt", "bare.pth", "w.safetensors"):
        _check_same_weights(load_model(plugin_gan, weights=weights_dir / name))


def test_wrong_checkpoint_names_the_key_diff(tmp_path: Path) -> None:
    # another network's checkpoint under a name no record claims, alone in its folder: it stands for the
    # generator (a file named like a record, e.g. s3fd.pth, would stand for that record instead)
    wrong = save_s3fd(tmp_path / "mystery.pth")
    with pytest.raises(WeightsError) as err:
        load_model(plugin, weights=wrong)
    text = str(err.value)
    assert "mystery.pth" in text and "[weights]" in text
    assert re.search(r"missing \(352\): face_encoder_blocks\.0\.0\.conv_block\.0\.weight", text), text
    assert re.search(r"unexpected \(65\): conv1_1\.weight", text), text
    assert err.value.remedy


def test_truncated_file_is_a_weights_error(weights_dir: Path, training_ckpt: Path) -> None:
    bad = weights_dir / "truncated.pth"
    bad.write_bytes(training_ckpt.read_bytes()[: 1 << 20])
    with pytest.raises(WeightsError, match="cannot read checkpoint"):
        load_model(plugin, weights=bad)


def test_missing_weights_offline_say_where_to_get_and_where_to_put(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as err:
        load_model(plugin_gan, weights=None, download=False)
    text = str(err.value)
    assert "wav2lip_gan.pth" in text
    assert "sharepoint.com" in text and "drive.google.com" in text and "camenduru/Wav2Lip" in text
    # the cache folder of this test (conftest points LIPSYNCKIT_HOME at tmp_path)
    assert str(tmp_path / "lsk_home" / "weights" / "wav2lip_gan" / "wav2lip_gan.pth") in text
    assert "--weights" in text
    ok, reason = plugin_gan.status()
    assert not ok and "not found" in reason


def test_cache_directory_is_used_and_verified(tmp_path: Path, training_ckpt: Path) -> None:
    cache = tmp_path / "lsk_home" / "weights"
    (cache / "wav2lip").mkdir(parents=True)
    (cache / "wav2lip" / "wav2lip.pth").symlink_to(training_ckpt)
    assert plugin.status() == (True, "")
    _check_same_weights(load_model(plugin))
    # wav2lip_gan.pth has a published size and sha256: a different file under that name in the cache is
    # refused (by its size, checked before the digest)
    (cache / "wav2lip_gan").mkdir(parents=True)
    (cache / "wav2lip_gan" / "wav2lip_gan.pth").symlink_to(training_ckpt)
    with pytest.raises(WeightsError, match="bytes, the release is 435801865"):
        load_model(plugin_gan)


class _NotATensor:
    """Stands for arbitrary pickled objects: loading must not construct them (weights_only=True)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran while loading",))


def test_pickled_code_in_a_checkpoint_is_never_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wav2lip.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _NotATensor()}, path)
    with pytest.raises(WeightsError, match=r"refused: the file's pickle asks to run code \(print\)"):
        load_model(plugin, weights=path)
    assert "code ran" not in capsys.readouterr().out

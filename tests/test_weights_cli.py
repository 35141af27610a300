"""`lipsynckit weights` and the resolver: local files, the cache, offline errors, sha256, safe loading."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from lipsynckit.cli import main
from lipsynckit.errors import WeightsError
from lipsynckit.model import ModelInfo, WeightFile, WeightSource
from lipsynckit.weights import load_checkpoint, load_strict, resolve, resolve_all, unwrap_state_dict, verify

INFO = ModelInfo(
    name="toy",
    display_name="Toy",
    face_size=8,
    weights=[
        WeightFile(
            key="net",
            filename="net.pth",
            relpath="sub/net.pth",
            sources=[WeightSource(hf_repo="someone/toy", note="official")],
        ),
        WeightFile(key="extra", filename="extra.pth", optional=True),
    ],
)


def test_resolve_explicit_folder_cache_and_offline_error(tmp_path: Path) -> None:
    wf = INFO.weights[0]
    with pytest.raises(WeightsError) as e:
        resolve(wf, "toy")
    msg = str(e.value)
    assert (
        "net.pth" in msg and "hf://someone/toy" in msg and "lsk_home" in msg
    )  # where to get it, where to put it
    layout = tmp_path / "models" / "sub"
    layout.mkdir(parents=True)
    (layout / "net.pth").write_bytes(b"x")
    assert resolve(wf, "toy", tmp_path / "models") == layout / "net.pth"
    assert resolve_all(INFO, tmp_path / "models") == {"net": layout / "net.pth"}
    with pytest.raises(WeightsError, match="does not exist"):
        resolve(wf, "toy", tmp_path / "nope")


def test_verify_sha256(tmp_path: Path) -> None:
    p = tmp_path / "net.pth"
    p.write_bytes(b"weights")
    good = WeightFile(key="n", filename="net.pth", sha256=hashlib.sha256(b"weights").hexdigest())
    assert verify(p, good)
    bad = WeightFile(key="n", filename="net.pth", sha256="0" * 64)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        verify(p, bad)


def test_load_checkpoint_forms_and_strict_diff(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    sd = net.state_dict()
    train = tmp_path / "train.pth"
    torch.save(
        {"state_dict": {"module." + k: v for k, v in sd.items()}, "optimizer": {}, "global_step": 3}, train
    )
    got = unwrap_state_dict(load_checkpoint(train))
    assert set(got) == set(sd)
    from safetensors.torch import save_file

    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    assert set(unwrap_state_dict(load_checkpoint(st))) == set(sd)
    script = tmp_path / "w.pt"
    torch.jit.script(net).save(str(script))
    assert set(unwrap_state_dict(load_checkpoint(script))) == set(sd)
    wrong = {k.replace("1.", "2."): v for k, v in sd.items()}
    with pytest.raises(WeightsError) as e:
        load_strict(net, wrong, path=train, what="toy")
    assert "missing (" in str(e.value) and "unexpected (" in str(e.value)
    # a pickle that needs code to load is refused (weights_only=True)
    evil = tmp_path / "evil.pth"
    torch.save({"obj": Path("x")}, evil)
    with pytest.raises(WeightsError, match="refused: the file's pickle asks to run code"):
        load_checkpoint(evil)


def test_weights_cli_list_and_fetch_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "list", "wav2lip"]) == 0
    out = capsys.readouterr().out
    assert "NON-COMMERCIAL" in out and "MISSING" in out
    assert main(["weights", "list", "viseme"]) == 0
    assert "needs no weights" in capsys.readouterr().out


def test_weights_verify_with_a_single_file_checks_only_its_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file given with --weights stands for the record it is named after, not for every record."""
    f = tmp_path / "wav2lip.pth"
    torch.save({"state_dict": {}}, f)
    assert main(["weights", "verify", "wav2lip", "--weights", str(f)]) == 0  # s3fd is optional
    out = capsys.readouterr().out
    assert f"generator    found    {f} [torch zip] no known sha256" in out
    assert "detector     MISSING  s3fd.pth" in out  # not the generator file mistaken for S3FD


ANY_OF = ModelInfo(
    name="toy_pair",
    display_name="Toy pair",
    face_size=8,
    weights=[
        WeightFile(
            key="pth", filename="gen.pth", any_of="gen", sources=[WeightSource(hf_repo="someone/toy")]
        ),
        WeightFile(
            key="ts",
            filename="gen_ts.pt",
            any_of="gen",
            size_bytes=3,
            sources=[WeightSource(url="https://x.y/ts")],
        ),
        WeightFile(key="aux", filename="aux.pth", optional=True),
    ],
)


def test_any_of_groups_resolve_one_alternative_and_verify_the_cache(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    with pytest.raises(WeightsError, match="none of 'gen.pth', 'gen_ts.pt' for model 'toy_pair' found") as e:
        resolve_all(ANY_OF, folder)
    assert "hf://someone/toy" in (e.value.remedy or "")
    (folder / "gen_ts.pt").write_bytes(b"abcdef")  # a user's file: trusted (weights verify checks it)
    assert resolve_all(ANY_OF, folder) == {"ts": folder / "gen_ts.pt"}
    (folder / "gen.pth").write_bytes(b"x")
    assert resolve_all(ANY_OF, folder) == {"pth": folder / "gen.pth"}  # record order decides
    assert resolve_all(ANY_OF, folder / "gen_ts.pt") == {
        "ts": folder / "gen_ts.pt"
    }  # a file stands for the record it is named after, and wins its group
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_all(ANY_OF, tmp_path / "missing")
    cache = tmp_path / "lsk_home" / "weights" / "toy_pair"
    cache.mkdir(parents=True)
    (cache / "gen_ts.pt").write_bytes(b"abcdef")  # in the cache it must be the release: 3 bytes
    with pytest.raises(WeightsError, match="6 bytes, the release is 3"):
        resolve_all(ANY_OF)


LAYOUT = ModelInfo(
    name="toy_layout",
    display_name="Toy layout",
    face_size=8,
    weights=[
        WeightFile(key="unet", filename="pytorch_model.bin", relpath="net/pytorch_model.bin"),
        WeightFile(
            key="vae",
            filename="vae.bin",
            relpath="vae/vae.bin",
            alt_relpaths=["vae-old/vae.bin", "vae/vae.safetensors"],
        ),
        WeightFile(
            key="audio", filename="pytorch_model.bin", relpath="audio/pytorch_model.bin", optional=True
        ),
    ],
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_layout_alternatives_shared_names_and_a_single_file_in_its_layout(tmp_path: Path) -> None:
    """Older releases' places (alt_relpaths), a name two records share is only taken at its place, and
    a single file finds the rest of its layout in the folders above it."""
    root = tmp_path / "models"
    audio = _touch(root / "audio" / "pytorch_model.bin")
    vae_old = _touch(root / "vae-old" / "vae.bin")
    # the audio model's pytorch_model.bin is never taken for the UNet's
    with pytest.raises(WeightsError, match="'net/pytorch_model.bin' for model 'toy_layout' not found"):
        resolve_all(LAYOUT, root)
    _touch(root / "pytorch_model.bin")  # a shared name at the top is ambiguous: still not taken
    with pytest.raises(WeightsError, match="'net/pytorch_model.bin'"):
        resolve_all(LAYOUT, root)
    unet = _touch(root / "net" / "pytorch_model.bin")
    assert resolve_all(LAYOUT, root) == {"unet": unet, "vae": vae_old, "audio": audio}
    vae = _touch(root / "vae" / "vae.bin")  # the current place comes before older ones
    assert resolve_all(LAYOUT, root)["vae"] == vae
    # one file: it stands for the record whose place it sits at; the rest comes from the layout above it
    assert resolve_all(LAYOUT, unet) == {"unet": unet, "vae": vae, "audio": audio}
    assert resolve_all(LAYOUT, audio) == {"unet": unet, "vae": vae, "audio": audio}
    renamed = _touch(tmp_path / "elsewhere" / "my_unet.pth")  # named after nothing: the main file
    with pytest.raises(WeightsError, match="'vae/vae.bin' for model 'toy_layout' not found"):
        resolve_all(LAYOUT, renamed)
    assert resolve_all(LAYOUT, _touch(root / "net" / "my_unet.pth"))["vae"] == vae


def test_weights_verify_finds_what_the_resolver_finds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`weights verify` reports the files `load` would use: the legacy MuseTalk layout, from one file."""
    root = tmp_path / "models"
    unet = _touch(root / "musetalkV15" / "unet.pth")
    vae = _touch(root / "sd-vae-ft-mse" / "diffusion_pytorch_model.bin")
    whisper = _touch(root / "whisper" / "model.safetensors")
    assert main(["weights", "verify", "musetalk", "--weights", str(unet)]) == 2  # empty stand-ins
    out = capsys.readouterr().out
    assert f"unet         found    {unet} [unknown] UNKNOWN FORMAT" in out
    assert f"vae          found    {vae}" in out
    assert f"whisper      found    {whisper}" in out
    assert "whisper_config MISSING  config.json" in out

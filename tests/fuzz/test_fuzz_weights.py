"""Weights never run code: payload checkpoints through every reader, `load_model`, `sync --weights`
and `weights verify` write nothing; the one opt-in runs only the file the user names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hostile import (
    STORAGE_BOMB,
    make_pickle_in_torchscript_zip,
    make_pickle_payload,
    make_torchscript_payload,
    one_error_line,
    partials,
    sha256_tree,
)

from lipsynckit.cli import main
from lipsynckit.errors import WeightsError
from lipsynckit.weights import describe_file, load_checkpoint, read_state_dict

PAYLOADS = {
    "torchscript": lambda p, m: make_torchscript_payload(p, m),
    "pickle-zip": lambda p, m: make_pickle_payload(p, m),
    "pickle-legacy": lambda p, m: make_pickle_payload(p, m, legacy=True),
    "pickle-in-torchscript-zip": lambda p, m: make_pickle_in_torchscript_zip(p, m),
}


@pytest.fixture(params=sorted(PAYLOADS))
def payload(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "MARKER"
    folder = tmp_path / "weights"
    folder.mkdir()
    return PAYLOADS[request.param](folder / "wav2lip.pth", marker), marker


def test_the_torchscript_payload_is_real(tmp_path: Path) -> None:
    """The corpus is honest: torch.jit.load on the payload does write its marker."""
    marker = tmp_path / "MARKER"
    p = make_torchscript_payload(tmp_path / "m.pt", marker)
    torch.jit.load(str(p))
    assert marker.exists()


def test_readers_refuse_payloads_and_write_nothing(payload: tuple[Path, Path]) -> None:
    path, marker = payload
    for read in (load_checkpoint, read_state_dict):
        with pytest.raises(WeightsError) as e:
            read(path)
        assert str(path) in str(e.value)
    kind, verdict, why = describe_file(path)
    assert verdict == "unsafe" and why
    assert not marker.exists()


def test_load_model_refuses_payloads(payload: tuple[Path, Path]) -> None:
    from lipsynckit.registry import load_model

    path, marker = payload
    with pytest.raises(WeightsError):
        load_model("wav2lip", weights=path, device="cpu")
    assert not marker.exists()


def test_cli_sync_and_verify_refuse_payloads(
    payload: tuple[Path, Path],
    image_png: Path,
    speech_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, marker = payload
    before = sha256_tree(tmp_path / "inputs")
    out = tmp_path / "out" / "x.mp4"
    code = main(["sync", str(image_png), str(speech_copy), "-m", "wav2lip", "-w", str(path), "-o", str(out)])
    assert code == 2
    assert "[weights]" in one_error_line(capsys.readouterr().err)
    assert main(["weights", "verify", "wav2lip", "--weights", str(path)]) == 2
    assert "UNSAFE" in capsys.readouterr().out
    assert not marker.exists()
    assert not out.exists() and not partials(tmp_path)
    assert sha256_tree(tmp_path / "inputs") == before


def test_a_storage_class_cannot_be_called_from_an_archive(tmp_path: Path) -> None:
    """Storage names resolve to inert dtype records: a pickle calling one to allocate 4 GB is refused."""
    p = make_pickle_in_torchscript_zip(tmp_path / "bomb.pt", tmp_path / "MARKER", data_pkl=STORAGE_BOMB)
    with pytest.raises(WeightsError, match="cannot read this TorchScript archive safely"):
        load_checkpoint(p)
    assert describe_file(p)[1] == "unsafe"


def test_plain_torchscript_is_read_without_running_it(tmp_path: Path) -> None:
    """A scripted module with ordinary state loads its exact tensors through the inert reader."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    torch.nn.init.normal_(net[1].weight)
    p = tmp_path / "net.pt"
    torch.jit.script(net).save(str(p))
    got = read_state_dict(p)
    want = net.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        assert torch.equal(got[k], v), k
    assert describe_file(p) == ("TorchScript", "ok", None)


def test_trust_opt_in_runs_only_the_named_file_and_never_a_cached_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "MARKER"
    p = make_torchscript_payload(tmp_path / "mine.pt", marker)
    other = make_torchscript_payload(tmp_path / "other.pt", tmp_path / "OTHER")
    monkeypatch.setenv("LIPSYNCKIT_TRUST_TORCHSCRIPT", str(p))
    with pytest.raises(WeightsError, match="LIPSYNCKIT_TRUST_TORCHSCRIPT"):
        load_checkpoint(other)  # not the named file: refused, with the opt-in in the remedy
    assert not (tmp_path / "OTHER").exists()
    assert set(load_checkpoint(p)) == {"b"}  # the user vouched for it: torch.jit.load ran it
    assert marker.exists()
    from lipsynckit.weights import cache_dir

    cached_marker = tmp_path / "CACHED"
    (cache_dir() / "weights" / "wav2lip").mkdir(parents=True)
    cached = make_torchscript_payload(cache_dir() / "weights" / "wav2lip" / "w.pt", cached_marker)
    monkeypatch.setenv("LIPSYNCKIT_TRUST_TORCHSCRIPT", str(cached))
    with pytest.raises(WeightsError):
        load_checkpoint(cached)
    assert not cached_marker.exists()


def test_verify_names_each_format_and_fails_on_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import save_file

    sd = {"w": torch.ones(2)}
    st = tmp_path / "a.safetensors"
    save_file(sd, str(st))
    zipped = tmp_path / "a.pth"
    torch.save(sd, zipped)
    legacy = tmp_path / "b.pth"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    junk = tmp_path / "c.pth"
    junk.write_bytes(b"GIF89a not weights")
    assert [describe_file(p)[:2] for p in (st, zipped, legacy, junk)] == [
        ("safetensors", "ok"),
        ("torch zip", "ok"),
        ("legacy pickle", "ok"),
        ("unknown", "unknown format"),
    ]
    assert main(["weights", "verify", "wav2lip", "--weights", str(junk)]) == 2
    assert "UNKNOWN FORMAT" in capsys.readouterr().out


def test_a_manifest_run_with_a_payload_checkpoint_writes_nothing(
    payload: tuple[Path, Path],
    image_png: Path,
    speech_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, marker = payload
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"template,audio,output\n{image_png},{speech_copy},talk.mp4\n")
    out = tmp_path / "out"
    code = main(
        ["-q", "batch", "--manifest", str(manifest), "-o", str(out), "-m", "wav2lip", "-w", str(path)]
    )
    said = capsys.readouterr()
    assert code != 0 and f"[weights] {path}" in said.out + said.err
    assert "Traceback" not in said.out + said.err
    assert not marker.exists() and not (out / "talk.mp4").exists() and not partials(tmp_path)

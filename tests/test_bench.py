"""`lipsynckit bench` on CPU writes JSON, markdown and a PNG for the usable models."""

from __future__ import annotations

import json
from pathlib import Path

from lipsynckit.cli import main


def test_bench_writes_report(
    astronaut_png: Path, speech_wav: Path, tmp_path: Path, reference_dir: Path
) -> None:
    import soundfile as sf

    from lipsynckit.media import load_audio

    short = tmp_path / "short.wav"
    clip = load_audio(speech_wav, sample_rate=16000)
    sf.write(short, clip.numpy()[: 16000 * 2], 16000)
    # the user's SyncNet (deterministic weights in its plain tensor-dict container) adds LSE-D/LSE-C
    import torch

    from lipsynckit.testing import deterministic_state_dict, load_manifest

    syncnet = tmp_path / "syncnet_v2.model"
    manifest = load_manifest(reference_dir / "wav2lip" / "manifest_syncnet_eval.json")
    torch.save(deterministic_state_dict(manifest), syncnet)
    report = tmp_path / "bench"
    args = [
        "-q",
        "bench",
        "--models",
        "viseme,no_such_model",
        "--video",
        str(astronaut_png),
        "--audio",
        str(short),
    ]
    rc = main([*args, "--report", str(report), "--device", "cpu", "--syncnet", str(syncnet)])
    assert rc == 0
    data = json.loads((report / "bench.json").read_text())
    rows = {r["model"]: r for r in data["rows"]}
    v = rows["viseme"]
    assert v["usable"], v["error"]
    assert v["pipeline_fps"] > 0 and v["step_fps"] > 0 and v["init_seconds"] >= 0
    assert v["peak_rss_mb"] > 50
    assert "av_correlation" in v["metrics"] and "identity_psnr" in v["metrics"]
    assert v["metrics"]["identity_psnr"] > 25
    assert v["metrics"]["lse_d"] > 0 and "lse_c" in v["metrics"] and -15 <= v["metrics"]["av_offset"] <= 15
    sched = v["scheduler"]
    assert (
        sched["batches"] >= 1 and 0.0 < sched["device_busy_fraction"] <= 1.0 and sched["mean_batch_fill"] > 0
    )
    assert not rows["no_such_model"]["usable"] and "no_such_model" in rows["no_such_model"]["error"]
    md = (report / "bench.md").read_text()
    assert "| viseme |" in md
    # model options reach the model and label the row (one model measured several ways)
    again = tmp_path / "bench_gain"
    assert (
        main([*args[:3], "viseme", *args[4:], "--report", str(again), "--device", "cpu", "-O", "gain=0.5"])
        == 0
    )
    row = json.loads((again / "bench.json").read_text())["rows"][0]
    assert row["usable"] and row["options"] == {"gain": 0.5}
    assert "| viseme (gain=0.5) |" in (again / "bench.md").read_text()
    assert (
        row["metrics"]["mouth_motion"] < v["metrics"]["mouth_motion"]
    )  # half the gain: the mouth moves less
    png = (report / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_bench_keeps_the_speed_figures_when_the_clip_is_too_short_for_metrics(
    astronaut_png: Path, speech_wav: Path, tmp_path: Path
) -> None:
    """Two frames of output: the quality metrics need three, so they are missing and say why, but the
    row stays usable with its speed figures (a GPU bench on a short clip must not lose them)."""
    import soundfile as sf

    from lipsynckit.media import load_audio

    tiny = tmp_path / "tiny.wav"
    sf.write(tiny, load_audio(speech_wav, sample_rate=16000).numpy()[16000:17300], 16000)
    report = tmp_path / "bench"
    args = ["-q", "bench", "--models", "viseme", "--video", str(astronaut_png), "--audio", str(tiny)]
    assert main([*args, "--report", str(report), "--device", "cpu"]) == 0
    row = json.loads((report / "bench.json").read_text())["rows"][0]
    assert row["usable"] and row["pipeline_fps"] > 0 and row["step_fps"] > 0
    assert row["metrics"] == {} and "at least 3 frames" in row["metrics_error"]
    assert "at least 3 frames" in (report / "bench.md").read_text()

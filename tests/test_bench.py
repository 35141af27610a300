"""`lipsynckit bench` on CPU writes JSON, markdown and a PNG for the usable models."""

from __future__ import annotations

import json
from pathlib import Path

from lipsynckit.cli import main


def test_bench_writes_report(astronaut_png: Path, speech_wav: Path, tmp_path: Path) -> None:
    import soundfile as sf

    from lipsynckit.media import load_audio

    short = tmp_path / "short.wav"
    clip = load_audio(speech_wav, sample_rate=16000)
    sf.write(short, clip.numpy()[: 16000 * 2], 16000)
    report = tmp_path / "bench"
    rc = main(
        [
            "-q",
            "bench",
            "--models",
            "viseme,no_such_model",
            "--video",
            str(astronaut_png),
            "--audio",
            str(short),
            "--report",
            str(report),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    data = json.loads((report / "bench.json").read_text())
    rows = {r["model"]: r for r in data["rows"]}
    v = rows["viseme"]
    assert v["usable"], v["error"]
    assert v["pipeline_fps"] > 0 and v["step_fps"] > 0 and v["init_seconds"] >= 0
    assert v["peak_rss_mb"] > 50
    assert "av_correlation" in v["metrics"] and "identity_psnr" in v["metrics"]
    assert v["metrics"]["identity_psnr"] > 25
    assert not rows["no_such_model"]["usable"] and "no_such_model" in rows["no_such_model"]["error"]
    md = (report / "bench.md").read_text()
    assert "| viseme |" in md
    png = (report / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

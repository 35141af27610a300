#!/usr/bin/env bash
# Issue 6's GPU figures in ONE device call: the `pytest -m gpu` tests, then per model (Wav2Lip, MuseTalk
# v1.5, LatentSync 1.6; fp32 and fp16) model-step FPS, end-to-end FPS at 720p, peak VRAM and the
# scheduler's device-busy fraction. Prepared by scripts/device-prep.sh (wheels in .whl/, reference
# subset and the carphone clip in .devref/); see docs/dev/device-check.md.
#
# There (the tool's `run`, carry [".whl", ".devref"]):   OUT=$OUT bash scripts/device-check.sh
# Rehearsal on a CPU machine (this venv, tiny inputs, fp16-only configurations skipped):
#   LSK_DEVICE=cpu OUT=/tmp/devout bash scripts/device-check.sh --rehearse
#
# Every step runs under `timeout`, capped by what is left of a total budget (LSK_BUDGET_S), and a failed
# or slow step never stops the later ones; the steps run cheap-and-important first. Whatever ran, the
# results are packed into $OUT at the end (at most 8 files come back from the device).
set -euo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
REPO=$(pwd)

REHEARSE=0
[[ ${1:-} == --rehearse ]] && REHEARSE=1
: "${OUT:?set OUT to the folder whose files come back}"
mkdir -p "$OUT"
DEVICE=${LSK_DEVICE:-cuda}
# 450 s of work + packing fits a 500 s timeout_s; the machine's start comes on top of that
BUDGET=${LSK_BUDGET_S:-$((REHEARSE ? 2400 : 450))}
WORK=${LSK_WORK:-/tmp/lsk-device}
((REHEARSE)) && WORK=${LSK_WORK:-/tmp/lsk-rehearsal}
RESERVE=20 # seconds kept back for merging and packing
T0=$SECONDS
STEPS=$OUT/steps.tsv
LAST_RC=0 LAST_STATUS=""

# step NAME CAP CMD...: CMD under `timeout` (which signals CMD's whole process group), limited to CAP
# seconds and to what is left of the budget; the outcome goes to steps.tsv. Always returns 0.
step() {
  local name=$1 cap=$2
  shift 2
  local left=$((BUDGET - (SECONDS - T0) - RESERVE))
  local lim=$((cap < left ? cap : left))
  if ((lim < 30)); then
    LAST_STATUS="skipped: budget (${left}s left)"
    printf '%s\t%s\t0\n' "$name" "$LAST_STATUS" >>"$STEPS"
    echo "=== $name: SKIPPED, ${left}s of the budget left"
    LAST_RC=125
    return 0
  fi
  echo "=== $name (limit ${lim}s, at $((SECONDS - T0))s): $*"
  local t=$SECONDS rc=0
  timeout --kill-after=10 "$lim" "$@" || rc=$?
  local status=ok
  ((rc == 0)) || status="failed rc=$rc"
  ((rc == 124 || rc == 137)) && status="timed out after ${lim}s"
  printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - t))" >>"$STEPS"
  echo "=== $name: $status in $((SECONDS - t))s"
  LAST_RC=$rc LAST_STATUS=$status
  return 0
}

skip() { # skip NAME WHY
  printf '%s\tskipped: %s\t0\n' "$1" "$2" >>"$STEPS"
  echo "=== $1: SKIPPED, $2"
}

pack() {
  # at most 8 files to $OUT (the device returns no more). The raw reports first (a tar is quick): if the
  # call's own limit strikes during the merge, they are back all the same.
  tar -czf "$OUT/details.tar.gz" -C "$WORK" --exclude='*.mkv' --exclude='*.mp4' --exclude=inputs \
    --exclude=merged . 2>/dev/null || true
  if ls "$WORK"/reports/*/bench.json >/dev/null 2>&1; then
    timeout 30 "$PY" benchmarks/merge_reports.py "$WORK/reports" --out "$WORK/merged" || true
    for f in device_bench.md bench.md bench.json bench.png; do
      [ -f "$WORK/merged/$f" ] && cp "$WORK/merged/$f" "$OUT/"
    done
  fi
  echo "=== packed $(ls "$OUT" | tr '\n' ' ')at $((SECONDS - T0))s"
  column -t -s $'\t' "$STEPS" 2>/dev/null || cat "$STEPS"
}

# bench LABEL CAP MODEL WEIGHTS AUDIO BATCH [-O k=v ...]: `lipsynckit bench` for one configuration, in
# its own process (own time limit, own peak-memory figures), into reports/NN-LABEL/ (NN: running order)
NBENCH=0
bench() {
  local label=$1 cap=$2 model=$3 weights=$4 audio=$5 batch=$6
  shift 6
  NBENCH=$((NBENCH + 1))
  local dir
  dir=$WORK/reports/$(printf '%02d' "$NBENCH")-$label
  mkdir -p "$dir"
  step "$label" "$cap" lipsynckit bench --models "$model" --weights "$weights" --video "$IN/talk720.mp4" \
    --audio "$IN/$audio" --report "$dir" --device "$DEVICE" --batch "$batch" "$@"
  # no report: the merged table says why; the CLI exits 0 when a row failed: steps.tsv says so too
  [ -f "$dir/bench.json" ] || echo "$LAST_STATUS" >"$dir/status"
  if [ -f "$dir/bench.json" ]; then
    "$PY" -c 'import json, sys
for r in json.load(open(sys.argv[1]))["rows"]:
    if not r["usable"]:
        print(sys.argv[2], "row failed: " + r["error"][:200], 0, sep="\t")' "$dir/bench.json" "$label" |
      tee -a "$STEPS" || true
  fi
}

run_steps() {
  rm -rf "$WORK" && mkdir -p "$WORK/reports"
  : >"$STEPS"
  echo "=== device-check $(date -u +%FT%TZ) rehearse=$REHEARSE device=$DEVICE budget=${BUDGET}s repo=$REPO"
  git log -1 --format='commit %H %s' 2>/dev/null || true

  # 1. python and packages. There: the image's python3 (torch) + the carried wheels in /tmp/site.
  if ((REHEARSE)); then
    PY=$REPO/.venv/bin/python
    export PATH=$REPO/.venv/bin:$PATH
  else
    PY=python3
    step install 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
    if ((LAST_RC != 0)); then
      echo "wheels did not install: nothing else can run"
      return 0
    fi
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    export PATH=/tmp/site/bin:$PATH
  fi

  local ref=tests/reference src=()
  [ -f .devref/carphone_pristine.mp4 ] && src=(--source .devref/carphone_pristine.mp4)

  # 2. what the figures depend on: card, driver, versions, TF32 flags, the image's unpinned packages
  {
    # (each under a short timeout: a wedged driver must not take the call)
    command -v nvidia-smi >/dev/null && timeout 30 nvidia-smi
    timeout 90 "$PY" - <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version(), "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.1f} GiB", f"sm_{p.major}{p.minor}", p.multi_processor_count, "SMs",
          "matmul tf32", torch.backends.cuda.matmul.allow_tf32, "cudnn tf32", torch.backends.cudnn.allow_tf32)
import av, soundfile, pydantic, diffusers, lipsynckit
print("av", av.__version__, "soundfile", soundfile.__version__, "pydantic", pydantic.__version__,
      "diffusers", diffusers.__version__, "lipsynckit", lipsynckit.__file__)
EOF
    "$PY" -m pip list 2>/dev/null | grep -iE '^(zipp|typing.extensions|filelock|regex|requests|pillow|opencv|tqdm|scipy|numpy|matplotlib|scikit.image|huggingface.hub|safetensors|triton|pytest) ' || true
    timeout 60 lipsynckit list-models
  } >"$WORK/env.txt" 2>&1 || true
  cat "$WORK/env.txt"

  # 3. inputs (CPU: the clip, speech cuts, 9 GB of weights) in the background while the GPU tests run
  # long: Wav2Lip and MuseTalk (120 frames); mid: LatentSync fp16 (60 frames = 4 chunks, + 3 for the step
  # figure); short: LatentSync fp32 (15 frames = 1 chunk, + 3). The quality metrics need >= 3 frames.
  local secs=4 speech=4,2,0.5 long=speech4.wav mid=speech2.wav short=speech0.5.wav
  ((REHEARSE)) && secs=0.5 speech=0.3,0.1 long=speech0.3.wav mid=speech0.1.wav short=speech0.1.wav
  step inputs 240 "$PY" benchmarks/make_inputs.py "$WORK/inputs" --seconds "$secs" --speech-seconds "$speech" \
    --models wav2lip,musetalk,latentsync --reference "$ref" "${src[@]}" &
  local inputs_pid=$!

  # 4. the GPU tests (they skip without CUDA); collection errors of unrelated modules must not hide them
  # (-o timeout: one hung test must not take the whole cap; the project's 900 s is for CPU runs)
  step gpu-tests 180 "$PY" -m pytest -m gpu -q -p no:cacheprovider -rA --continue-on-collection-errors \
    -o timeout=100 --junitxml="$WORK/junit-gpu.xml" tests
  wait "$inputs_pid" || true
  if [ ! -f "$WORK/inputs/talk720.mp4" ] || [ ! -f "$WORK/inputs/$short" ]; then
    echo "no inputs: no bench"
    return 0
  fi

  # 5. benches, cheapest first: Wav2Lip, MuseTalk v1.5, LatentSync 1.6; fp32 and fp16 each
  IN=$WORK/inputs
  local b_w2l=64 b_mt=16 b_ls=16 ls_cap=220 ls_extra=()
  if ((REHEARSE)); then
    # CPU: smallest batches and inputs; LatentSync at 1 step without guidance (still ~25 CPU s a frame)
    b_w2l=2 b_mt=2 b_ls=1 ls_cap=900 ls_extra=(-O steps=1 -O guidance=1.0)
  fi
  bench wav2lip-fp32 90 wav2lip "$IN/wav2lip.pth" "$long" "$b_w2l"
  bench wav2lip-fp16 90 wav2lip "$IN/wav2lip.pth" "$long" "$b_w2l" --dtype float16
  bench musetalk-fp32 150 musetalk "$IN/musetalk_models" "$long" "$b_mt"
  if ((REHEARSE)); then
    skip musetalk-fp16 "rehearsal: fp16 is CUDA-only (the plugin runs fp32 on CPU)"
  else
    bench musetalk-fp16 150 musetalk "$IN/musetalk_models" "$long" "$b_mt" --dtype float16
  fi
  # streaming (issue 19): Wav2Lip real-time sessions at 25 fps on one loaded model, a row per 1, 2, 4, ...
  # sessions up to 16 (2 in a rehearsal); outside reports/ (another table), packed in details.tar.gz
  local s_max=16
  ((REHEARSE)) && s_max=2
  step stream-wav2lip 75 lipsynckit bench --stream --models wav2lip --weights "$IN/wav2lip.pth" \
    --video "$IN/talk720.mp4" --device "$DEVICE" --sessions "$s_max" --seconds 6 --report "$WORK/stream-wav2lip"
  # LatentSync's own choice on a GPU of compute capability > 7 is fp16 (as the official inference)
  if ((REHEARSE)); then
    skip latentsync-fp16 "rehearsal: float16 on CPU"
  else
    bench latentsync-fp16 "$ls_cap" latentsync "$IN/latentsync_checkpoints" "$mid" "$b_ls" --dtype float16
  fi
  # fp32 costs several times more: the short speech (15 frames = 1 chunk of 16 + the 3 of the step), last
  bench latentsync-fp32 "$ls_cap" latentsync "$IN/latentsync_checkpoints" "$short" "$b_ls" --dtype float32 \
    "${ls_extra[@]}"
  return 0
}

# one subshell for both, so that pack sees PY and PYTHONPATH; tee keeps the log even if we are killed
PY=python3
rc=0
{
  run_steps "$@"
  pack
  echo "device-check: $((SECONDS - T0))s in all"
} 2>&1 | tee "$OUT/device-check.log" || rc=$?
exit "$rc"

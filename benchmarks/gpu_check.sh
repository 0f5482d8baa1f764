#!/usr/bin/env bash
# GPU check (issue 31): the ratios that need a GPU, measured in one run on one machine, in under
# 8 minutes on one H100. Run from anywhere; it works in the repository root:
#
#   bash benchmarks/gpu_check.sh               # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-smoke   # the same stages at toy sizes on the CPU (plumbing)
#
# Stages (each under `timeout`, logs in $GPU_CHECK_OUT, default runs/gpu_check):
#   1. Cycles GPU / CPU frames/s on the same small_obj scene (benchmarks/render_throughput.py
#      --device cpu gpu), after the calibration CoC probes rendered on each device (--coc-probe):
#      the ratio counts only where the GPU's blur holds.
#   2. A small 256 px small_obj dataset for stage 4 (dfdgen render --device gpu).
#   3. The gsplat backend against the torch reference (benchmarks/splat_throughput.py --compare) at
#      a 40 px CoC (refused: gsplat draws CoCs up to gsplat_backend.GSPLAT_MAX_COC_PX, so the
#      refusal and the reference's times) and at that limit: time ratio and largest differences.
#   4. Training steps/s of sdgs (and sdgs_stack when registered) at 256 px on the GPU
#      (benchmarks/train_throughput.py --device cuda).
# Nothing is fetched from the internet: it needs .venv with the project installed
# (README: python3.11 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e ".[all]"),
# and makes one only from wheels already on the machine (pip --no-index; $PIP_FIND_LINKS).
set -u
cd "$(dirname "$0")/.."

SMOKE=0
case "${1:-}" in
  --cpu-smoke) SMOKE=1 ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--cpu-smoke]" >&2; exit 2 ;;
esac
OUT=${GPU_CHECK_OUT:-runs/gpu_check}
BUDGET=${GPU_CHECK_BUDGET_S:-440}  # the whole run, seconds; a stage that would not fit is skipped
mkdir -p "$OUT"
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  echo "no .venv: making one from local wheels only (pip --no-index)"
  python3.11 -m venv .venv && .venv/bin/pip install --no-index ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} \
    -e ".[train,render,dev]" || { echo "could not install offline; run the README's install line first" >&2; exit 2; }
fi

if [ "$SMOKE" = 1 ]; then  # toy sizes, CPU only: every stage's command runs end to end
  SIZE=32; SAMPLES=2; PROBE_SAMPLES=2; CYCLES_DEVICES="cpu gpu"; DATA_DEVICE=cpu; SPLAT_DEVICE=cpu
  SPLAT_COC=12; TORCH_DEVICE=cpu; STEPS=1; DATA_SCENES=2; THREADS="--threads 1"
else
  SIZE=256; SAMPLES=64; PROBE_SAMPLES=64; CYCLES_DEVICES="cpu gpu"; DATA_DEVICE=gpu; SPLAT_DEVICE=cuda
  SPLAT_COC=40; TORCH_DEVICE=cuda; STEPS=5; DATA_SCENES=4; THREADS=""
fi
LIMIT=$("$PY" -c "from dfd_models.splat.gsplat_backend import GSPLAT_MAX_COC_PX as m; print(f'{m:.1f}')")
LIMIT_COC=$("$PY" -c "from dfd_models.splat.gsplat_backend import GSPLAT_MAX_COC_PX as m; print(int(m))")

declare -A STATUS
# stage NAME SECONDS CMD...: runs CMD under timeout, its output to $OUT/NAME.log and the terminal.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 20 ]; then STATUS[$name]="skipped (budget spent)"; echo "== $name: skipped"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (at most ${limit} s): $*"
  local start=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  grep -v -e '^Fra:' -e '^Blender' -e '^Read ' -e '^ *$' "$OUT/$name.log" | tail -n 25
  case $rc in
    0) STATUS[$name]="ok, $((SECONDS - start)) s" ;;
    124|137) STATUS[$name]="TIMED OUT after ${limit} s" ;;
    *) STATUS[$name]="FAILED (exit $rc, $OUT/$name.log)" ;;
  esac
}

stage env 30 "$PY" -c "
import torch
from dfd_models.splat import gsplat_backend
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else '-', 'gsplat', gsplat_backend._version())"

stage cycles 150 "$PY" benchmarks/render_throughput.py --recipe small_obj --sizes "$SIZE" --samples "$SAMPLES" \
  --scenes 1 --ramps 1 --device $CYCLES_DEVICES --coc-probe --probe-samples "$PROBE_SAMPLES" $THREADS

rm -rf "$OUT/data"
stage data 60 .venv/bin/dfdgen render --recipe small_obj -n "$DATA_SCENES" --out "$OUT/data" --device "$DATA_DEVICE" \
  --set "image.width=$SIZE" --set "image.height=$SIZE" --set image.samples=16 --set focus.ramps=1 \
  --set "splits={train: 1.0, val: 0.0, test: 0.0}" $THREADS

stage splat_${SPLAT_COC}px 60 "$PY" benchmarks/splat_throughput.py --compare --sizes "$SIZE" --devices "$SPLAT_DEVICE" \
  --max-coc "$SPLAT_COC" --repeats 3 $THREADS
stage splat_limit 60 "$PY" benchmarks/splat_throughput.py --compare --sizes "$SIZE" --devices "$SPLAT_DEVICE" \
  --max-coc "$LIMIT_COC" --repeats 3 $THREADS

ROWS="sdgs"
if "$PY" -c "import sys; from dfd_models.networks import MODELS; sys.exit('sdgs_stack' not in MODELS)"; then
  ROWS="sdgs sdgs_stack"
fi
stage train 110 "$PY" benchmarks/train_throughput.py --shards "$OUT/data" --crop "$SIZE" --batch-size 1 \
  --steps "$STEPS" --rows $ROWS --device "$TORCH_DEVICE" $THREADS

# The summary, read back from the stage logs.
log() { cat "$OUT/$1.log" 2>/dev/null; }
echo
echo "=================== gpu_check summary ($([ "$SMOKE" = 1 ] && echo 'CPU SMOKE: toy sizes, no GPU' || echo "$SIZE px")) ==================="
printf '%-34s %s\n' "machine" "$(log env | grep '^torch' | tail -n 1)"
printf '%-34s %s\n' "Cycles devices" "$(log cycles | grep -o 'devices .*' | head -n 1)"
log cycles | grep '^CoC probe' | while read -r line; do printf '%-34s %s\n' "" "$line"; done
printf '%-34s %s\n' "Cycles GPU / CPU frames/s" "$(log cycles | awk '$2=="gpu" && NF>=13 {print $13 " (gpu " $10 " frames/s)"}' | tail -n 1)"
printf '%-34s %s\n' "Cycles CPU frames/s" "$(log cycles | awk '$2=="cpu" && NF>=13 {print $10}' | tail -n 1)"
for name in "splat_${SPLAT_COC}px" splat_limit; do
  line=$(log "$name" | grep -E "^$SPLAT_DEVICE " | tail -n 1)
  if echo "$line" | grep -q 'refused'; then
    printf '%-34s %s\n' "$name: torch fwd / f+b ms" "$(echo "$line" | awk '{print $4 " / " $5 " (max CoC " $3 " px)"}')"
    printf '%-34s %s\n' "$name: gsplat" "refused: $(echo "$line" | sed 's/.*unusable: //')"
  elif [ -n "$line" ]; then
    printf '%-34s %s\n' "$name: torch fwd / f+b ms" "$(echo "$line" | awk '{print $4 " / " $5 " (max CoC " $3 " px)"}')"
    printf '%-34s %s\n' "$name: torch / gsplat time" "$(echo "$line" | awk '{print "fwd " $6 "x, fwd+bwd " $7 "x"}')"
    printf '%-34s %s\n' "$name: max |diff|" "$(echo "$line" | awk '{print "image " $8 ", depth " $9 ", grad (rel) " $10}')"
  else
    printf '%-34s %s\n' "$name" "no result"
  fi
done
printf '%-34s %s\n' "gsplat CoC limit" "$LIMIT px (gsplat_backend.GSPLAT_MAX_COC_PX)"
for row in sdgs sdgs_stack; do
  if [ "$row" = sdgs_stack ] && [ "$ROWS" = sdgs ]; then
    printf '%-34s %s\n' "sdgs_stack steps/s" "sdgs_stack: not registered"
    continue
  fi
  printf '%-34s %s\n' "$row steps/s ($TORCH_DEVICE, ${SIZE} px)" "$(log train | awk -v r="$row" '$1==r && NF==3 {print $2}' | tail -n 1)"
done
printf '%-34s %s\n' "splat re-render (torch ref.)" "$(log train | grep -o 'forward + backward: .*' | tail -n 1)"
echo "stages:"
for name in env cycles data "splat_${SPLAT_COC}px" splat_limit train; do
  printf '  %-32s %s\n' "$name" "${STATUS[$name]:-not run}"
done
echo "total ${SECONDS} s; logs in $OUT"

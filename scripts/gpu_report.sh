#!/usr/bin/env bash
# The GPU report in one command: the GPU tests, attention throughput at S = 1024 and 4096
# (scratch vs mmcourse vs raw SDPA: TFLOP/s and share of the device's peak), the LSTM's
# Python loop vs cuDNN, and `mmcourse train` with bf16 and with --compile (seconds per epoch
# after the first, test accuracy); then one table.
#
#   scripts/gpu_report.sh            # on a CUDA machine; on a CPU it runs what a CPU can
#   scripts/gpu_report.sh --quick    # tiny sizes, one epoch: a check that the report works
#
# Without CUDA the GPU-only rows (bf16 and compiled training) say "skipped"; the benchmarks run
# on the CPU at small sizes and `mmcourse train` runs once in float32, so a CPU-only CI proves
# the script works. Each step's output is kept in $GPU_REPORT_DIR (default: a new temporary
# folder, printed at the start); a step that fails does not stop the others. The exit status
# is that of the table: 1 when a step failed. GPU_TESTS names what pytest collects (default
# tests/).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python}
out=${GPU_REPORT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-report.XXXXXX")}
mkdir -p "$out"
export MMCOURSE_QUIET=1 TQDM_DISABLE=1 PYTHONUNBUFFERED=1

if "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  device=cuda
  name=$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0))')
else
  device=cpu
  name="no CUDA device: CPU only, small sizes"
fi
if [ "$device" = cuda ] && [ "$quick" -eq 0 ]; then
  seq_lens=(1024 4096); size=large; timing=(--repeats 10 --warmup 3); train_args=()
elif [ "$quick" -eq 0 ]; then
  seq_lens=(64 128); size=small; timing=(--repeats 5 --warmup 1); train_args=()
else
  seq_lens=(32 64); size=small; timing=(--repeats 1 --warmup 0)
  train_args=(--epochs 1 --fusion-epochs 0)
fi
if [ "$device" = cpu ]; then
  timing+=(--threads 1)  # threads contend on a shared CPU: one gives steadier numbers
fi
echo "gpu report: $name; outputs in $out"
echo "$name, torch $("$PYTHON" -c 'import torch; print(torch.__version__)'), $(date -u +%Y-%m-%dT%H:%MZ)" \
  > "$out/title.txt"

# step NAME COMMAND...: run it, keeping its output and exit status; never stop the script
step() {
  local name=$1 start status
  shift
  echo "-- $name: $*"
  start=$(date +%s)
  set +e
  "$@" > "$out/$name.out" 2> "$out/$name.err"
  status=$?
  set -e
  echo "$status" > "$out/$name.status"
  if [ "$status" -eq 0 ]; then
    echo "   done in $(( $(date +%s) - start )) s"
  else
    echo "   exit status $status; last lines of $out/$name.err:"
    tail -n 5 "$out/$name.err" | sed 's/^/   /'
  fi
}

skip() {
  echo "-- $1: skipped ($2)"
  echo "skipped: $2" > "$out/$1.status"
}

# shellcheck disable=SC2086
step gpu-tests "$PYTHON" -m pytest -p no:xdist -p no:cacheprovider -m gpu -q ${GPU_TESTS:-tests}
step attention "$PYTHON" -m mmcourse bench --device "$device" --seq-len "${seq_lens[@]}" \
  --size "$size" "${timing[@]}" --json
step lstm "$PYTHON" -m mmcourse bench --device "$device" --ops lstm --size "$size" \
  "${timing[@]}" --json
if [ "$device" = cuda ]; then
  step train-bf16 "$PYTHON" -m mmcourse train --device cuda --amp bf16 --json \
    --out "$out/run-bf16" ${train_args[@]+"${train_args[@]}"}
  step train-compile "$PYTHON" -m mmcourse train --device cuda --amp bf16 --compile --json \
    --out "$out/run-compile" ${train_args[@]+"${train_args[@]}"}
else
  skip train-bf16 "no CUDA device"
  skip train-compile "no CUDA device"
  step train-fp32 "$PYTHON" -m mmcourse train --device cpu --amp off --threads 1 --json \
    --out "$out/run-fp32" ${train_args[@]+"${train_args[@]}"}
fi

echo
"$PYTHON" -m mmcourse.bench.report "$out"

#!/usr/bin/env bash
# The CUDA path after a change to core, on the GPU machine (device tool, carry [".gpu-smoke"] made
# by: mkdir -p .gpu-smoke/{debs,data}; apt-get download nlohmann-json3-dev into debs; the t10k
# Fashion-MNIST files into data). Builds the headless CLI against CUDA LibTorch 2.x and runs
# sampling, training, resume and the hardening checks on the GPU; prints a short table last.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-smoke}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
results=()
check() {  # check NAME EXPECTED_EXIT COMMAND...: runs it, keeps its output, notes the result
  local name=$1 want=$2; shift 2
  local t=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  results+=("$(printf '%-28s exit %-3s (want %s) %4ss  %s' "$name" "$rc" "$want" "$((SECONDS - t))" \
    "$( [ "$rc" = "$want" ] && echo ok || echo FAILED)")")
  tail -2 "$OUT/$name.log"
}
check info 0 $cli info --device cuda
check sample-default 0 $cli sample --device cuda --count 256 --steps 50 --tensors "$OUT/s.safetensors" --quiet
check sample-latent 0 $cli sample --device cuda --model latent-fashion-mnist --count 256 --steps 50 --tensors "$OUT/l.safetensors" --quiet
rm -rf "$OUT/run"
check train-toy 0 $cli train --dataset toy:moons --device cuda --steps 300 --log-every 100 --checkpoint-every 100 --out "$OUT/run"
check train-again-refused 1 $cli train --dataset toy:moons --device cuda --steps 300 --out "$OUT/run"
check resume-other-schedule 1 $cli train --dataset toy:moons --device cuda --steps 400 --out "$OUT/run" --resume --schedule linear
check resume 0 $cli train --dataset toy:moons --device cuda --steps 400 --log-every 100 --out "$OUT/run" --resume
# GPU out of memory: a batch far beyond the device must be a message, not a crash.
check sample-oom 1 $cli sample --device cuda --count 100000 --batch 100000 --steps 2 --tensors "$OUT/oom.safetensors" --quiet
grep -i "memory" "$OUT/sample-oom.log" | head -3 | cut -c1-300
echo
printf '%s\n' "${results[@]}"
echo "total $((SECONDS - t0)) s"

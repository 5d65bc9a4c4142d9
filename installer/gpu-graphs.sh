#!/usr/bin/env bash
# CUDA graphs on the GPU machine (issue 17): builds the headless CLI against CUDA LibTorch and times
# the bundled models' guided forward pass eagerly and replayed as a CUDA graph, alternated in one
# process (batch 1, 64, 256), and a whole guided DDIM 50 chain through generate() both ways with
# the largest difference between their outputs. Device tool, carry [".gpu-graphs"]: debs/ with
# nlohmann-json3-dev (no data needed).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-graphs}
mkdir -p "$G/data"
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
grep -i "cuda graphs" gpu-logs/configure.log
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/graphs.log"
for m in fashion-mnist-live default; do
  echo "== $m" | tee -a "$OUT/graphs.log"
  $cli bench --model "$m" --device cuda --batches 1,64,256 --iters 100 --chain 2>&1 | tee -a "$OUT/graphs.log"
done
echo "total $((SECONDS - t0)) s"
# The peer in the same call: the same network in PyTorch eager, as a hand CUDA graph and with
# torch.compile (default, reduce-overhead), at batch 1 and 256 (bench/sample_reference.py).
echo "== peer (PyTorch), same GPU, same call" | tee -a "$OUT/graphs.log"
(cd bench && timeout 300 python3 sample_reference.py --batches 1,256 --iters 100) 2>&1 | grep -v "Warning\|warn" | tee -a "$OUT/graphs.log"
echo "== diffusionlab again (alternated), default architecture" | tee -a "$OUT/graphs.log"
$cli bench --model default --device cuda --batches 1,256 --iters 100 2>&1 | tee -a "$OUT/graphs.log"
echo "total with peer $((SECONDS - t0)) s"

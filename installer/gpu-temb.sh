#!/usr/bin/env bash
# One matrix product for all the residual blocks' time-embedding projections (network.cpp
# block_embeddings) against one a block (DLAB_ONE_TEMB_GEMM=0), on the batch-256 guided pass beside
# the peer. Device tool, carry [".gpu-lat"], ~5 min: bench --check-fused; the same samples both
# ways; kernel profile (float32); the guided pass at batch 1 and 256 alternated twice; the peer
# (torch.compile reduce-overhead, float32 and float16) between our runs.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=${LOG:-temb.log}
source installer/gpu-common.sh || exit 1
echo "== 0. bench --check-fused"
check_fused check-fused-temb.log
grep -E "WRONG|not usable" $OUT/check-fused-temb.log
modes=("DLAB_ONE_TEMB_GEMM=1" "DLAB_ONE_TEMB_GEMM=0")
echo "== 1. the same samples"
sample_modes default "${modes[0]}" "${modes[1]}"
python3 bench/compare_samples.py default one=/tmp/samples-0.safetensors each=/tmp/samples-1.safetensors --pairs one-each 2>&1 | tail -3
echo "== 2. kernels of 20 batch-256 passes"
env DLAB_PROFILE_STEPS=20 DLAB_PROFILE_ROWS=16 $cli bench --model default --device cuda --batches 256 --iters 30 2>&1 |
  grep -E "^profile|ms/step"
echo "== 3. guided pass, alternated"
bench_modes 2 default 60 "${modes[@]}" "DLAB_HALF=fp16" "DLAB_HALF=fp16 DLAB_ONE_TEMB_GEMM=0"
echo "== 4. the peer, float32 and float16, between ours"
peer() { (cd bench && timeout 200 python3 sample_reference.py --batches 256 --iters 100 --variants compile-ro "$@") 2>&1 | grep -E "^ +256"; }
peer
bench_modes 1 default 100 "${modes[@]}"
peer --dtype float16
bench_modes 1 default 100 "DLAB_HALF=fp16" "DLAB_HALF=fp16 DLAB_ONE_TEMB_GEMM=0"
echo "total $((SECONDS - t0)) s"

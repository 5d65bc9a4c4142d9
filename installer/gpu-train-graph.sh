#!/usr/bin/env bash
# The training step as one CUDA graph on the GPU machine (issue 17, item 1). Device tool, carry
# [".gpu-sched"] (debs/ and Fashion-MNIST data/). Builds the headless CLI against CUDA LibTorch, then
#  1. the same run (seed 0, 60 steps, batch 128, default network) graphed and eager
#     (DLAB_CUDA_GRAPHS=0), without and with dropout: the loss rows and the final weights compared;
#  2. training speed, one process at a time, alternated: DiffusionLab graphed and eager, and the
#     peer bench/train_reference.py (the same network in PyTorch) eager, whole-step CUDA graph,
#     torch.compile default and reduce-overhead, at batch 128, then the graphed/eager pair at 256;
#  3. the quality tier's network (6.8 M parameters) graphed and eager at batch 256.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
grep -i "cuda graphs" gpu-logs/configure.log
cat > gpu-logs/quality-config.json <<'JSON'
{"network": {"base_channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 2, "attention_resolutions": [14, 7],
             "dropout": 0.1}}
JSON
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "== 1. the same run graphed (g1) and eager (g0)"
for drop in 0 0.1; do
  echo "{\"network\": {\"dropout\": $drop}}" > gpu-logs/drop.json
  for g in 1 0; do
    DLAB_CUDA_GRAPHS=$g $cli train --dataset fashion-mnist --config gpu-logs/drop.json --steps 60 --batch 128 \
      --warmup 10 --log-every 10 --checkpoint-every 100000 --device cuda --out /tmp/eq-$drop-g$g --overwrite \
      > "$OUT/eq-$drop-g$g.log" 2>&1 || { echo "train failed:"; tail -5 "$OUT/eq-$drop-g$g.log"; }
    grep -i "graph" "$OUT/eq-$drop-g$g.log"
  done
  DROP=$drop python3 - <<'PY'
import csv, os
from safetensors.torch import load_file
d = os.environ["DROP"]
rows = [list(csv.DictReader(open(f"/tmp/eq-{d}-g{g}/loss.csv"))) for g in (1, 0)]
print(f"dropout {d}: loss every 10 steps, graphed | eager:")
for a, b in zip(*rows):
    print(f"  step {a['step']:>3}: {float(a['loss']):.6f} | {float(b['loss']):.6f}")
ga, ea = load_file(f"/tmp/eq-{d}-g1/model.safetensors"), load_file(f"/tmp/eq-{d}-g0/model.safetensors")
diff = max((ga[k].float() - ea[k].float()).abs().max().item() for k in ga)
scale = max(ea[k].float().abs().max().item() for k in ea)
print(f"  EMA weights after 60 steps: max |graphed - eager| = {diff:.2e} (largest weight {scale:.2f}), {len(ga)} tensors")
PY
done
echo "== 2. training speed (img/s, steps after the warm-up), alternated"
dl() {  # dl GRAPHS BATCH [extra args]: mean img/s of the log windows after the first
  local g=$1 b=$2; shift 2
  DLAB_CUDA_GRAPHS=$g $cli train --dataset fashion-mnist --steps "${STEPS:-650}" --batch "$b" --lr 3e-4 --warmup 50 \
    --ema 0.9995 --log-every 50 --checkpoint-every 100000 --device cuda --out /tmp/speed --overwrite "$@" > /tmp/speed.log 2>&1 ||
    { tail -3 /tmp/speed.log; return; }
  awk -F, -v g="$g" -v b="$b" 'NR > 2 { n++; s += $4 } END { printf "diffusionlab %s, batch %d: %.0f img/s (%d windows of 50 steps)\n", (g == 1 ? "graphed" : "eager"), b, s / n, n }' /tmp/speed/loss.csv
}
peer() { timeout 240 python3 bench/train_reference.py --data "$G/data" --steps 600 --warmup-steps 50 --batch "$1" --mode "$2" 2>&1 | tail -n 1; }
dl 1 128; dl 0 128
peer 128 eager; peer 128 graph
dl 1 128
peer 128 compile; peer 128 compile-ro
dl 1 128; dl 0 128
dl 1 256; dl 0 256
peer 256 graph
echo "total $((SECONDS - t0)) s"
echo "== 3. the quality network, batch 256"
STEPS=300 dl 1 256 --config gpu-logs/quality-config.json --prediction v --min-snr 5
STEPS=300 dl 0 256 --config gpu-logs/quality-config.json --prediction v --min-snr 5
echo "total $((SECONDS - t0)) s"

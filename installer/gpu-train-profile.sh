#!/usr/bin/env bash
# Where a training step's GPU time goes (issue 17: training at 0.74x-0.93x of torch.compile
# reduce-overhead). Device tool, carry [".gpu-sched-eval"] (debs/ and Fashion-MNIST data/), ~6 min:
#  1. DiffusionLab's step (default network, batch 128, float32/TF32), eager so that every kernel
#     is a launch of its own (DLAB_CUDA_GRAPHS=0; the graph replays the same kernels), under Nsight
#     Compute timing each kernel (ncu --clock-control none, one metric: gpu__time_duration): the
#     kernels by time per step;
#  2. the peer (bench/train_reference.py --profile) eager and torch.compile reduce-overhead under
#     torch.profiler: the same table for PyTorch's own kernels and compile's fused ones;
#  3. the plain timings of both, unprofiled, for scale;
#  4. the training GroupNorm (fused_ops.h: fused_group_norm_act_train, opt-in DLAB_GN_TRAIN=1):
#     bench --check-fused (its output and gradients against float64 autograd), the same 60-step run
#     with and without it (losses side by side), its kernels under ncu, and img/s alternated.
# Read it as: which of our kernels (GroupNorm forward/backward, elementwise, AdamW, EMA) cost more
# than compile's, and what a fused kernel of our own could take.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched-eval}
FUSED=1 LOG=train-profile.log
source installer/gpu-common.sh || exit 1
steps=${STEPS:-20}
# The default network, batch 128, from scratch: train_args STEPS OUT-DIR
train_args() {
  args=(train --dataset fashion-mnist --steps "$1" --batch 128 --warmup 10 --log-every 10 --checkpoint-every 100000
        --device cuda --out "$2" --overwrite)
}
# ncu_table LABEL [VAR=value ...]: the eager step's kernels by time per step.
ncu_table() {
  local label=$1
  shift
  echo "-- $label"
  train_args "$steps" /tmp/prof-run
  env DLAB_CUDA_GRAPHS=0 "$@" timeout 300 ncu --clock-control none --metrics gpu__time_duration.sum --csv --page raw \
    --log-file /tmp/ncu.csv $cli "${args[@]}" > /tmp/ncu-train.log 2>&1 ||
    { echo "ncu run failed:"; tail -5 /tmp/ncu-train.log; return; }
  STEPS=$steps python3 - <<'PY'
import csv, os, re
steps = int(os.environ["STEPS"])
rows = list(csv.reader(open("/tmp/ncu.csv")))
head = next((i for i, r in enumerate(rows) if "Kernel Name" in r), None)
if head is None:
    raise SystemExit("no kernel table in /tmp/ncu.csv: " + " | ".join(",".join(r) for r in rows[:5]))
names, times = rows[head].index("Kernel Name"), rows[head].index("gpu__time_duration.sum")
unit = rows[head + 1][times] if len(rows) > head + 1 else ""
scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0}.get(unit, 1e-6)
total, calls = {}, {}
for r in rows[head + 1:]:
    try:
        t = float(r[times].replace(",", "")) * scale
    except (ValueError, IndexError):
        continue
    name = re.sub(r"\(.*", "", r[names])[:60]
    total[name] = total.get(name, 0.0) + t
    calls[name] = calls.get(name, 0) + 1
whole = sum(total.values())
print(f"DiffusionLab eager: {sum(calls.values())} kernels, {whole / steps:.3f} ms of kernel time a step ({steps} steps, "
      f"start-up included)")
for name, t in sorted(total.items(), key=lambda kv: -kv[1])[:30]:
    print(f"{name:60s} {t / steps:8.3f} ms/step {calls[name] / steps:6.1f} calls/step {100 * t / whole:5.1f} %")
PY
}
echo "== 1. DiffusionLab, eager, $steps steps under ncu"
ncu_table "LibTorch's GroupNorm" DLAB_GN_TRAIN=0
echo "== 2. the peer under torch.profiler"
for m in eager compile-ro; do
  (cd bench && timeout 200 python3 train_reference.py --data "$DLAB_FASHION_MNIST_DIR" --mode $m --steps 200 --profile 20) 2>&1 |
    grep -v "Warning\|warn"
done
echo "== 3. DiffusionLab unprofiled, graphed and eager (img/s)"
for g in 1 0; do
  train_args 600 /tmp/speed-g$g
  DLAB_CUDA_GRAPHS=$g $cli "${args[@]}" 2>&1 | grep -E "^done|rror"
done
echo "== 4. the training GroupNorm kernel (DLAB_GN_TRAIN=1)"
$cli bench --check-fused --device cuda 2>&1 | grep -E "^training|WRONG|rror" || echo "CHECK FAILED"
for gn in 0 1; do
  train_args 60 /tmp/eq-gn$gn
  DLAB_GN_TRAIN=$gn $cli "${args[@]}" > /tmp/eq-gn$gn.log 2>&1 || { echo "train failed:"; tail -3 /tmp/eq-gn$gn.log; }
done
paste -d, /tmp/eq-gn0/loss.csv /tmp/eq-gn1/loss.csv | awk -F, 'NR > 1 { printf "  step %4d: loss %.6f (LibTorch) %.6f (fused)\n", $1, $2, $6 }'
ncu_table "fused training GroupNorm" DLAB_GN_TRAIN=1
for r in 1 2; do
  for gn in 0 1; do
    train_args 600 /tmp/speed-gn$gn
    echo -n "graphed, DLAB_GN_TRAIN=$gn: "
    DLAB_GN_TRAIN=$gn $cli "${args[@]}" 2>&1 | grep -E "^done|rror"
  done
done
echo "total $((SECONDS - t0)) s"

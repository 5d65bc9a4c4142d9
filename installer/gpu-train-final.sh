#!/usr/bin/env bash
# Training speed beside the peer with the kernel time of both (issue 17; device tool, carry [".gpu-lat"],
# ~5 min): bench --check-fused; the GroupNorm kernels of 30 graphed steps with several groups a block
# (default) and one (DLAB_GN_GPB=1); img/s (steady: the log windows after the first) of both
# alternated 3x with torch.compile reduce-overhead between them, profiled (torch.profiler: its GPU
# kernel time a step) in the plain layout, then channels-last, then plain unprofiled.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=.gpu-lat FUSED=1 LOG=final.log; source installer/gpu-common.sh || exit 1
check_fused check-fused-final.log
a=(train --dataset fashion-mnist --batch 128 --warmup 10 --checkpoint-every 100000 --device cuda --overwrite)
for v in "DLAB_GN_GPB=0" "DLAB_GN_GPB=1"; do echo "-- $v"; env $v DLAB_PROFILE_STEPS=30 $cli "${a[@]}" --log-every 10 --steps 65 --out /tmp/pv 2>&1 | grep -E "^profile|group_norm"; done
peer() { echo -n "peer compile-ro $*: "; (cd bench && timeout 200 python3 train_reference.py --data "$DLAB_FASHION_MNIST_DIR" --mode compile-ro --steps 600 "$@") > /tmp/peer.txt 2>&1; grep -E "img/s|rror" /tmp/peer.txt | tail -1; grep "GPU kernel time" /tmp/peer.txt; }
for r in 1 2 3; do
 for v in "DLAB_GN_GPB=0" "DLAB_GN_GPB=1"; do echo -n "DiffusionLab $v: "; env $v $cli "${a[@]}" --log-every 100 --steps 600 --out /tmp/s 2>&1 | grep "^done" | cut -c1-90; done
 [ $r = 1 ] && peer --profile 20; [ $r = 2 ] && peer --channels-last --profile 20; [ $r = 3 ] && peer
done
echo "total $((SECONDS - t0)) s"

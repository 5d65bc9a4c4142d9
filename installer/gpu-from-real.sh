#!/usr/bin/env bash
# Where in t a model loses the real data (issue 18, item 1): `eval --from-real` starts the chains
# from training images (a latent model: their latents) noised to timestep T and runs the rest of
# the chain; FID / precision / recall / agreement per T against the test set, N = 10,000.
# Device tool, carry [".gpu-diag"] (debs/ and xz/: the test split and the first 10,000 training
# images and labels, 7.5 MB); the tree needs fashion-mnist-classifier and the models named below
# (stash the other models and docs/ for the call: the tree and carry travel within 64 MiB).
#   installer/gpu-from-real.sh [N]
# MODELS: "name:sampler:steps:spacing ..." (default: the two quality-tier models at their
# recommended samplers); TS: the timesteps (comma list).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-diag}
source installer/gpu-common.sh || exit 1
N=${1:-10000}
TS=${TS:-20,50,100,200,300,400,500,600,700,800,900,999}
for m in ${MODELS:-latent-fashion-mnist-quality:ddim:200:linspace fashion-mnist-quality:dpmpp2m:50:linspace}; do
  IFS=: read -r name sampler steps spacing <<< "$m"
  echo "== $name, $sampler $steps $spacing, s = 1, from real at t = $TS"
  $cli eval --model "$name" --from-real "$TS" --scales 1 --count "$N" --sampler "$sampler" --steps "$steps" \
    --spacing "$spacing" --device cuda --metrics fid,precision,recall,agreement --json "$OUT/from-real-$name.json" 2>&1 |
    tee "$OUT/from-real-$name.log" | grep -vE "^  (features|guidance)"
done
echo "total $((SECONDS - t0)) s"

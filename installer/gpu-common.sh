# Sourced by the installer/gpu-*.sh device scripts (from the repository root): builds the headless
# CLI against the device's CUDA LibTorch and points the data at $G/data.
# In: G (the carried folder with debs/ and data/), DLAB_CMAKE_EXTRA (more cmake arguments), FUSED=1
# (build the fused CUDA kernels with the machine's nvcc), LOG (keep the output as $OUT/LOG). Out: cli, t0,
# DLAB_FASHION_MNIST_DIR, OUT (default gpu-logs); gpu-logs/.
if [ "${FUSED:-0}" = 1 ]; then
  command -v nvcc > /dev/null || export PATH=/usr/local/cuda/bin:$PATH
  export DLAB_CMAKE_EXTRA="-DDLAB_WITH_FUSED_CUDA=ON ${DLAB_CMAKE_EXTRA:-}"
fi
mkdir -p gpu-logs "$G/root"
OUT=${OUT:-gpu-logs}
# LOG=NAME: everything the calling script prints is also kept as $OUT/NAME (a file that comes back).
[ -n "${LOG:-}" ] && exec > >(tee "$OUT/$LOG") 2>&1
# Data carried as .xz (smaller than the .gz files, for calls near the 64 MiB limit): back to .gz once.
if [ -d "$G/xz" ] && [ ! -d "$G/data" ]; then
  mkdir -p "$G/data.tmp" && python3 -c 'import glob, gzip, lzma, os, sys
for f in glob.glob(sys.argv[1] + "/xz/*.xz"):
    with lzma.open(f) as src, gzip.open(sys.argv[1] + "/data.tmp/" + os.path.basename(f)[:-3] + ".gz", "wb", 1) as dst:
        dst.write(src.read())' "$G" && mv "$G/data.tmp" "$G/data" || { echo "could not unpack $G/xz"; exit 1; }
fi
dpkg-deb -x "$G"/debs/nlohmann-json3-dev_*.deb "$G/root"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
t0=$SECONDS
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDLAB_BUILD_GUI=OFF -DDLAB_WITH_OPENCV=OFF \
  -DDLAB_BUILD_TESTS=OFF -DCMAKE_PREFIX_PATH="$torch_prefix;$PWD/$G/root/usr" ${DLAB_CMAKE_EXTRA:-} > gpu-logs/configure.log 2>&1 ||
  { tail -30 gpu-logs/configure.log; exit 1; }
cmake --build build-gpu --target diffusionlab-cli -j "$(nproc)" > gpu-logs/build.log 2>&1 ||
  { grep -E "error" -A3 gpu-logs/build.log | head -40; exit 1; }
echo "build $((SECONDS - t0)) s"
cli=build-gpu/app/diffusionlab-cli
export DLAB_FASHION_MNIST_DIR=$PWD/$G/data
# One entry of an EVAL_STEPS list: "200" (DDIM, trailing spacing) or "SAMPLER:STEPS[:SPACING]"
# (ddpm:1000, ddim:50:linspace); sets eval_opts (arguments of `eval`) and eval_tag (for file names).
eval_entry() {
  local IFS=:
  set -- $1
  if [ $# = 1 ]; then eval_opts=(--steps "$1"); eval_tag=ddim$1
  else eval_opts=(--sampler "$1" --steps "$2" --spacing "${3:-trailing}"); eval_tag=$1$2${3:+-$3}; fi
}
# The guided forward pass of MODEL at batch 1 and 256 under each environment setting given (each a
# "VAR=value ..." string), in that order, ROUNDS times: bench_modes ROUNDS MODEL ITERS SETTING...
bench_modes() {
  local rounds=$1 model=$2 iters=$3 r m
  shift 3
  for ((r = 0; r < rounds; r++)); do
    for m in "$@"; do
      echo "-- $model, $m"
      env $m $cli bench --model "$model" --device cuda --batches 1,256 --iters "$iters" 2>&1 | tail -n 4
    done
  done
}
# The same 8 samples of MODEL (DDIM 20, s = 3, seed 11) under each environment setting given, the
# i-th written to /tmp/samples-i.safetensors: sample_modes MODEL SETTING...
sample_modes() {
  local model=$1 i=0 m
  shift
  for m in "$@"; do
    env $m $cli sample --model "$model" --sampler ddim --steps 20 --guidance 3 --seed 11 --count 8 \
      --tensors /tmp/samples-$i.safetensors --device cuda --quiet 2>&1 | tail -2
    i=$((i + 1))
  done
}
# bench --check-fused into $OUT/NAME, then one line of counts: check_fused NAME.
check_fused() {
  $cli bench --check-fused --device cuda > "$OUT/$1" 2>&1
  echo "check-fused rc=$? $(grep -c ' ok' "$OUT/$1") ok $(grep -c WRONG "$OUT/$1") WRONG"
}
# The peer (bench/sample_reference.py: the same network in PyTorch, torch.compile reduce-overhead) on
# the batch-256 guided pass, its result line; arguments go to it (--dtype float16): peer [ARG...].
peer() { (cd bench && timeout 200 python3 sample_reference.py --batches 256 --iters 100 --variants compile-ro "$@") 2>&1 | grep -E "^ +256"; }
# FID, precision, recall and class agreement of fashion-mnist-quality (DPM-Solver++ 50 linspace, s = 1,
# N = 10,000) under each environment setting given, one line each: fid_quality SETTING...
fid_quality() {
  local m
  for m in "$@"; do
    env $m $cli eval --model fashion-mnist-quality --scales 1 --count 10000 --batch 1000 --sampler dpmpp2m \
      --steps 50 --spacing linspace --device cuda --metrics fid,precision,recall,agreement 2>&1 | grep -E "s=1.00" |
      sed "s/^/$m /"
  done
}
# The kernels of 20 graphed batch-256 passes of the default model under each environment setting
# given (the ROWS most costly; default 18): profile_modes SETTING...
profile_modes() {
  local m
  for m in "$@"; do
    echo "-- $m"
    env $m DLAB_PROFILE_STEPS=20 DLAB_PROFILE_ROWS=${ROWS:-18} $cli bench --model default --device cuda --batches 256 --iters 30 2>&1 |
      grep -E "^profile|ms/step"
  done
}

#!/usr/bin/env bash
# Builds the libFuzzer targets (CMake preset `fuzz`: clang, ASan + UBSan) and runs each for a fixed
# time on a copy of its seed corpus; prints executions, coverage and crashes per target.
#   fuzz/run.sh [SECONDS_PER_TARGET]     (default 60; needs clang and libclang-rt-14-dev)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-60}
cmake --preset fuzz > /dev/null || exit 1
cmake --build --preset fuzz --target fuzz_safetensors fuzz_model_config fuzz_idx fuzz_manifest fuzz_image fuzz_run_record > /tmp/dlab-fuzz-build.log 2>&1 ||
  { grep -E "error" /tmp/dlab-fuzz-build.log | head -20; exit 1; }
export ASAN_OPTIONS=detect_leaks=0:detect_container_overflow=0:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0
for t in safetensors model_config idx manifest image run_record; do
  work=$(mktemp -d)
  cp fuzz/corpus/$t/* "$work/"
  log=build-fuzz/fuzz_$t.log
  build-fuzz/fuzz/fuzz_$t "$work" -max_total_time="$secs" -rss_limit_mb=4096 -timeout=20 -max_len=4096 \
    -artifact_prefix=build-fuzz/crash-$t- > "$log" 2>&1
  rc=$?
  stats=$(grep -E "^#[0-9]+.*(DONE|pulse|NEW|REDUCE)" "$log" | tail -1)
  printf '%-14s exit %s  %s  corpus %s files\n' "$t" "$rc" "$(echo "$stats" | grep -oE 'cov: [0-9]+ ft: [0-9]+|exec/s: [0-9]+' | tr '\n' ' ')" "$(ls "$work" | wc -l)"
  grep -oE "^Done [0-9]+ runs in [0-9]+ second\(s\)" "$log"
  if [ $rc -ne 0 ]; then failed=1; grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" | head -5; fi
  rm -rf "$work"
done
exit $failed

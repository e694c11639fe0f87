#!/usr/bin/env bash
# Build and run bench/hw_floors.cpp: this machine's read rate, AVX2 integer-multiply issue rate,
# float32 FMA rates (256/512-bit, 1 and all threads) and float16 conversion rate: the floors of
# the float32 and ItemIndex scans (see the file's header).
#   bash bench/hw_floors.sh [MiB to read, default 256] [threads, default all CPUs]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
src="$here/../cpp/src/runtime"
"${CXX:-g++}" -O2 -std=c++17 -mavx2 -mfma -pthread -I"$here/../cpp/include" "$here/hw_floors.cpp" \
  "$src/hw_probe.cpp" "$src/simd_detect.cpp" -o "$out/hw_floors"
"$out/hw_floors" "$@"

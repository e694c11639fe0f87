#!/usr/bin/env bash
# Build and run bench/hw_floors.cpp: this machine's read rate and AVX2 integer-multiply issue
# rate, the floors of the ItemIndex B = 1 and B = 1024 scans (see the file's header).
#   bash bench/hw_floors.sh [MiB to read, default 256] [threads, default all CPUs]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"${CXX:-g++}" -O2 -std=c++17 -mavx2 -mfma -pthread "$here/hw_floors.cpp" -o "$out/hw_floors"
"$out/hw_floors" "$@"

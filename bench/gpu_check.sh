#!/usr/bin/env bash
# GPU check for recfast's CUDA backend, in one go on a fresh GPU machine (within ~8 minutes):
#   1. build recfast with RECFAST_CUDA=ON (or, without nvcc, install the prebuilt wheel in .whl/),
#   2. run tests/test_cuda.py,
#   3. run bench/gpu_bench.py (N=10M, d=128, B=1024, k=100 and a few more shapes),
#   4. with the time left, the host CPU's side: tests/test_index.py and bench/index_bench.py at
#      the instruction set found there (the AVX-512 VNNI int8 kernels run only on such a CPU),
# writing gpu_check.log, test_cuda.xml, gpu_bench.json, test_index.xml, index_bench.md and
# gpu_check.json into OUTDIR.
#
# Usage, from the repository root or anywhere:   bash bench/gpu_check.sh OUTDIR
# Environment: PYTHON (default python3: the interpreter that has torch with CUDA);
# GPU_CHECK_USE_WHEEL=1 skips the build and installs the prebuilt wheel from .whl/.
#
# The machine is assumed offline. Build tools (scikit-build-core, pybind11, cmake, ninja and
# their pure-Python needs) are taken from the interpreter when present, else from .whl/.
#
# Preparing .whl/ (on a machine with PyPI, at the repository root; /.whl/ is in .gitignore):
#   W="python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl"
#   $W scikit_build_core pybind11 pathspec packaging ninja cmake
#   # optional, only if the GPU machine lacks them (numpy/scipy are usually there; ~50 MB):
#   # $W numpy scipy
#   # the prebuilt recfast wheel for cp312 with the CUDA module (used when nvcc is missing):
#   /root/.pyenv/versions/3.12.1/bin/python3 -m venv /tmp/venv312
#   /tmp/venv312/bin/pip install scikit-build-core pybind11 cmake ninja numpy scipy
#   PATH=/usr/local/cuda/bin:$PATH RECFAST_CUDA=ON /tmp/venv312/bin/pip wheel \
#       --no-build-isolation --no-deps . -w .whl
# Keep one version of each package in .whl/; the whole working tree that travels to the GPU
# machine must stay under 64 MiB.
set -uo pipefail

OUTDIR=${1:?usage: bash bench/gpu_check.sh OUTDIR}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
LOG="$OUTDIR/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1
START=$(date +%s)
BUILD=skipped TESTS=skipped BENCH=skipped HOW=none INDEX=skipped
elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "[gpu_check +$(elapsed)s] $*"; }
left() { echo $(( 470 - $(elapsed) )); }  # seconds left of the 8-minute budget, with margin

finish() {
  cat > "$OUTDIR/gpu_check.json" <<EOF
{"build": "$BUILD", "install": "$HOW", "tests": "$TESTS", "bench": "$BENCH", "index": "$INDEX", "seconds": $(elapsed)}
EOF
  say "summary: build=$BUILD install=$HOW tests=$TESTS bench=$BENCH index=$INDEX"
}
trap finish EXIT

say "repository $ROOT, output $OUTDIR"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || say "nvidia-smi failed"
"$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__, "| torch CUDA", torch.version.cuda, "| device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)' \
  || say "torch with CUDA is not importable with $PY"

# ---- build tools: from the interpreter, else from .whl/ ------------------------------------
need=()
"$PY" -c 'import scikit_build_core' 2>/dev/null || need+=(scikit_build_core pathspec packaging)
"$PY" -c 'import pybind11' 2>/dev/null || need+=(pybind11)
command -v cmake >/dev/null || "$PY" -c 'import cmake' 2>/dev/null || need+=(cmake)
command -v ninja >/dev/null || "$PY" -c 'import ninja' 2>/dev/null || need+=(ninja)
"$PY" -c 'import numpy, scipy' 2>/dev/null || need+=(numpy scipy)
if ((${#need[@]})); then
  say "missing here: ${need[*]}; installing from .whl/"
  if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --find-links .whl "${need[@]}" || say "pip from .whl/ failed"
  else
    say "no .whl/ folder: cannot install ${need[*]} offline"
  fi
fi

# ---- build with CUDA, or install the prebuilt wheel ----------------------------------------
NVCC=$(command -v nvcc || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
[ "${GPU_CHECK_USE_WHEEL:-0}" = 1 ] && { say "GPU_CHECK_USE_WHEEL=1: not building"; NVCC=""; }
if [ -n "$NVCC" ]; then
  say "nvcc: $NVCC ($("$NVCC" --version | tail -1))"
  export CUDACXX=$NVCC PATH="$(dirname "$NVCC"):$PATH"
  export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
  if RECFAST_CUDA=ON timeout 300 "$PY" -m pip install --no-build-isolation --no-deps --no-index \
      -v . > "$OUTDIR/build.log" 2>&1; then
    BUILD=ok HOW=built
    grep -E "recfast: building the CUDA backend|Successfully installed" "$OUTDIR/build.log"
  else
    BUILD=failed
    say "build failed; the end of $OUTDIR/build.log:"
    tail -40 "$OUTDIR/build.log"
  fi
elif [ "${GPU_CHECK_USE_WHEEL:-0}" != 1 ]; then
  say "nvcc NOT FOUND: no CUDA toolkit on this machine; looking for a prebuilt wheel in .whl/"
fi
if [ "$BUILD" != ok ]; then
  WHEEL=$(ls .whl/recfast-*cp312*.whl 2>/dev/null | head -1)
  if [ -n "$WHEEL" ]; then
    "$PY" -m pip install -q --no-deps --no-index --force-reinstall "$WHEEL" && HOW="wheel $WHEEL"
    say "installed $WHEEL"
  else
    say "no prebuilt wheel .whl/recfast-*cp312*.whl: cannot install recfast with CUDA"
    exit 1
  fi
fi

# Run from outside the source tree so that the installed package (with _cuda) is imported.
cd "$OUTDIR"
"$PY" - <<'EOF' || { say "recfast does not see the GPU"; exit 1; }
import recfast, recfast._cuda_backend as b
print("recfast", recfast.__version__, "HAS_CUDA", recfast.HAS_CUDA, b.info())
if not recfast.HAS_CUDA:
    raise SystemExit(1)
EOF

# ---- tests ----------------------------------------------------------------------------------
say "tests/test_cuda.py"
if timeout $(( $(left) - 200 > 60 ? $(left) - 200 : 60 )) "$PY" -m pytest -q -p no:cacheprovider \
    --rootdir "$ROOT" -c "$ROOT/pyproject.toml" "$ROOT/tests/test_cuda.py" \
    --junitxml "$OUTDIR/test_cuda.xml"; then
  TESTS=passed
else
  TESTS=failed
fi

# ---- benchmark ------------------------------------------------------------------------------
say "bench/gpu_bench.py ($(left) s left)"
if timeout $(( $(left) > 60 ? $(left) : 60 )) "$PY" "$ROOT/bench/gpu_bench.py" \
    --out "$OUTDIR/gpu_bench.json"; then
  BENCH=ok
else
  BENCH=failed
fi

# ---- the host CPU: ItemIndex kernels at its instruction set -----------------------------------
say "CPU flags: $(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx512_fp16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
"$PY" -c 'import recfast._core as c; print("simd", c.simd_level(), "| int8/float16 kernel set", c.quant_kernel())'
if (( $(left) > 90 )); then
  if timeout $(( $(left) / 2 )) "$PY" -m pytest -q -p no:cacheprovider --rootdir "$ROOT" \
      -c "$ROOT/pyproject.toml" "$ROOT/tests/test_index.py" --junitxml "$OUTDIR/test_index.xml"; then
    INDEX=passed
  else
    INDEX=failed
  fi
  (( $(left) > 30 )) && timeout $(( $(left) - 10 )) "$PY" "$ROOT/bench/index_bench.py" \
    | tee "$OUTDIR/index_bench.md"
else
  say "no time left for the CPU index check"
fi
[ "$TESTS" = passed ] && [ "$BENCH" = ok ]

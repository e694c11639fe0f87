#!/usr/bin/env bash
# Install a built recfast artefact into a fresh venv and check it where no compiler is:
#
#   tools/check_installed.sh dist/recfast-*-manylinux_*.whl   # the wheel
#   tools/check_installed.sh dist/recfast-*.tar.gz            # the sdist, built from source
#
# An sdist is built by pip in an isolated environment that holds only the declared build
# requirements (pyproject.toml [build-system]); a compiler is needed for that step only. Then,
# with PATH stripped of every compiler (gcc, g++, cc, c++, nvcc, clang, zig) and CC/CXX unset,
# it runs: import, recfast.simd_level(), `python -m recfast.bench --quick`, and the top-k smoke
# tests under each RECFAST_SIMD level this CPU has (generic, avx2, avx512).
set -euo pipefail
cd "$(dirname "$0")/.."
artefact="$1"
export PIP_DISABLE_PIP_VERSION_CHECK=1
venv="$PWD/build/check-$(basename "$artefact" | sed 's/[^A-Za-z0-9_.-]/_/g')"
rm -rf "$venv"
python3 -m venv "$venv"
py="$venv/bin/python"
case "$artefact" in
  # The CUDA module is left out of this check's build: CI compiles it in the main build already.
  *.tar.gz) RECFAST_CUDA=OFF "$py" -m pip install -q "$artefact" ;;
  *.whl) "$py" -m pip install -q "$artefact" ;;
  *) echo "error: $artefact is neither a wheel (.whl) nor an sdist (.tar.gz)" >&2; exit 2 ;;
esac
"$py" -m pip install -q "pytest>=8" "hypothesis>=6.100"

# A PATH with every command of the usual directories except the compilers.
nocc="$venv/nocompiler-bin"
mkdir -p "$nocc"
for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  [ -d "$dir" ] || continue
  for exe in "$dir"/*; do
    name="$(basename "$exe")"
    case "$name" in
      gcc|g++|cc|c++|nvcc|clang|clang++|zig|cpp|*-gcc|*-g++|*-gcc-[0-9]*|*-g++-[0-9]*|gcc-[0-9]*|g++-[0-9]*|clang-[0-9]*|clang++-[0-9]*) continue ;;
    esac
    [ -e "$nocc/$name" ] || ln -s "$exe" "$nocc/$name"
  done
done

run() { env -u CC -u CXX -u CUDACXX PATH="$venv/bin:$nocc" "$@"; }
for compiler in gcc g++ cc c++ nvcc; do
  if run sh -c "command -v $compiler" >/dev/null; then
    echo "error: $compiler is still on the stripped PATH" >&2
    exit 1
  fi
done

# Run from outside the source tree, so that `import recfast` can only find the installed one.
tests="$PWD/tests"
cd "$venv"
run python -c 'import recfast, sys; print("recfast", recfast.__version__, "from", recfast.__file__, "SIMD level:", recfast.simd_level())'
run python -m recfast.bench --quick
best="$(run python -c 'import recfast; print(recfast.simd_level())')"
case "$best" in
  avx512) levels="generic avx2 avx512" ;;
  avx2) levels="generic avx2" ;;
  *) levels="generic" ;;
esac
for level in $levels; do
  echo "== top-k smoke tests with RECFAST_SIMD=$level =="
  got="$(RECFAST_SIMD=$level run python -c 'import recfast; print(recfast.simd_level())')"
  if [ "$got" != "$level" ]; then
    echo "error: RECFAST_SIMD=$level gave the SIMD level $got" >&2
    exit 1
  fi
  RECFAST_SIMD=$level run python -m pytest -q -p no:cacheprovider \
    "$tests/test_topk_reference.py"
done

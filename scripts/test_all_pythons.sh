#!/usr/bin/env bash
# Runs the pre-fork suites (TEST_ALL_PYTHONS_SUITES="prefork http monkey" adds the HTTP and monkey
# ones) on every CPython >= 3.10 found on this machine:
#   scripts/test_all_pythons.sh [PYTEST_ARGS...]
# Interpreters: ~/.pyenv/versions/3.1[0-9]* and /usr/bin/python3.1[0-9] (the first one found for
# each X.Y; TEST_ALL_PYTHONS_ONLY="3.14 ..." keeps only those versions). scripts/py314_root.sh
# runs this inside a Debian unstable root for CPython 3.14. Each gets its own virtual environment .venv-pyX.Y, set up like the Makefile's .venv
# (scripts/bootstrap.sh, then an editable install with the test extras; the native build goes to
# build/{wheel_tag}, one directory per version). Exit status: 0 when every version passed, else 1
# (the versions that failed are listed at the end).
set -uo pipefail
cd "$(dirname "$0")/.."

declare -A chosen=()
versions=()
for candidate in "$HOME"/.pyenv/versions/3.1[0-9]*/bin/python3 /usr/bin/python3.1[0-9]; do
  [[ -x "$candidate" ]] || continue
  version=$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
  [[ -n "${chosen[$version]:-}" ]] && continue
  if [[ -n "${TEST_ALL_PYTHONS_ONLY:-}" && " $TEST_ALL_PYTHONS_ONLY " != *" $version "* ]]; then
    continue
  fi
  chosen[$version]="$candidate"
  versions+=("$version")
done
if ((${#versions[@]} == 0)); then
  echo "test_all_pythons: no CPython >= 3.10 found" >&2
  exit 1
fi
mapfile -t versions < <(printf '%s\n' "${versions[@]}" | sort -V)

tests=()
for suite in ${TEST_ALL_PYTHONS_SUITES:-prefork}; do
  tests+=(tests/test_"$suite"_*.py)
done
failed=()
for version in "${versions[@]}"; do
  python="${chosen[$version]}"
  venv=".venv-py$version"
  echo "=== Python $version ($python) in $venv"
  if ! { scripts/bootstrap.sh "$python" "$venv" &&
    "$venv/bin/python" -m pip install -q --no-build-isolation -e '.[test]'; }; then
    echo "=== Python $version: setting up $venv failed" >&2
    failed+=("$version (set-up)")
    continue
  fi
  if ! "$venv/bin/python" -m pytest -p no:cacheprovider -W error::DeprecationWarning \
    "${tests[@]}" "$@"; then
    failed+=("$version")
  fi
done

if ((${#failed[@]})); then
  echo "test_all_pythons: failed on: ${failed[*]}" >&2
  exit 1
fi
echo "test_all_pythons: passed on ${versions[*]}"

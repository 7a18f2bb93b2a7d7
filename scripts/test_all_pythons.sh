#!/usr/bin/env bash
# Runs the pre-fork supervisor tests on every CPython >= 3.10 found on this machine:
#   scripts/test_all_pythons.sh [PYTEST_ARGS...]
# Interpreters: those scripts/pythons.sh finds. Each gets its own virtual environment .venv-pyX.Y,
# set up like the Makefile's .venv (scripts/bootstrap.sh, then an editable install with the test
# extras; the native build goes to build/{wheel_tag}, one directory per version). Exit status: 0
# when every version passed, else 1 (the versions that failed are listed at the end).
set -uo pipefail
cd "$(dirname "$0")/.."

declare -A chosen=()
versions=()
while read -r version python; do
  chosen[$version]="$python"
  versions+=("$version")
done < <(scripts/pythons.sh)
if ((${#versions[@]} == 0)); then
  echo "test_all_pythons: no CPython >= 3.10 found" >&2
  exit 1
fi

tests=(tests/test_prefork_*.py)
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

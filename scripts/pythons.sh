#!/usr/bin/env bash
# Prints the CPython interpreters >= 3.10 found on this machine, one "X.Y PATH" line each, sorted
# by version: ~/.pyenv/versions/3.1[0-9]* and /usr/bin/python3.1[0-9] (the first one found for each
# X.Y). Used by scripts/test_all_pythons.sh and scripts/build_wheels.sh. Exit status 1 when none.
set -uo pipefail

declare -A chosen=()
for candidate in "$HOME"/.pyenv/versions/3.1[0-9]*/bin/python3 /usr/bin/python3.1[0-9]; do
  [[ -x "$candidate" ]] || continue
  version=$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
  [[ -n "${chosen[$version]:-}" ]] && continue
  chosen[$version]="$candidate"
done
if ((${#chosen[@]} == 0)); then
  echo "pythons: no CPython >= 3.10 found" >&2
  exit 1
fi
for version in "${!chosen[@]}"; do
  echo "$version ${chosen[$version]}"
done | sort -V

#!/usr/bin/env bash
# Installs the Autobahn|Testsuite (wstest, Python 2.7 only) into a virtualenv, once.
# Usage: scripts/autobahn_env.sh DIRECTORY   (prints the path of wstest on success)
# CPython 2.7 comes from pyenv (~/.pyenv/versions/2.7*) or the PATH; the virtualenv is made by a
# virtualenv release that still creates Python 2.7 environments (< 20.22), installed into the
# directory's own bootstrap venv, so nothing is added to the 2.7 installation itself.
set -euo pipefail
target=${1:?usage: scripts/autobahn_env.sh DIRECTORY}
if [[ -x "$target/env/bin/wstest" ]]; then
  echo "$target/env/bin/wstest"
  exit 0
fi
python2=""
for candidate in "$HOME"/.pyenv/versions/2.7*/bin/python2.7 "$(command -v python2.7 || true)"; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then
    python2=$candidate
    break
  fi
done
if [[ -z "$python2" ]]; then
  echo "autobahn_env: no CPython 2.7 found (pyenv install 2.7.18)" >&2
  exit 1
fi
mkdir -p "$target"
python3 -m venv "$target/bootstrap" >&2
"$target/bootstrap/bin/python" -m pip install -q 'virtualenv<20.22' >&2
rm -rf "$target/env"
"$target/bootstrap/bin/python" -m virtualenv -q -p "$python2" "$target/env" >&2
# The last releases of the suite's Python 2 dependencies.
"$target/env/bin/python" -m pip install -q --disable-pip-version-check autobahntestsuite >&2
echo "$target/env/bin/wstest"

#!/usr/bin/env bash
# Prepares everything `bench/run.py` needs; idempotent, safe to run again.
#  - Debian: wrk (load generator), libev-dev (to build bjoern), taskset (util-linux), valgrind
#    (callgrind: bench/wsgi_profile.py's instruction counts).
#  - bench/.venv-peers: the servers we compare against, from PyPI, plus matplotlib for the chart
#    and the apps they serve (Flask for scenario 9, Django for scenario 10, Falcon).
#    Kept apart from .venv so that their dependencies never leak into the project's environment.
#    bjoern and fastwsgi are optional: when one fails to build here it is skipped (run.py notes it).
#  - build/bench: the C++ tools (pure C++ responder on our core, fixed-rate load generator,
#    WebSocket echo/broadcast client).
# Usage: bench/setup.sh [PYTHON]   (PYTHON defaults to python3)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${1:-python3}"
PEERS="$ROOT/bench/.venv-peers"
STAMP="$PEERS/.installed-v3"

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v taskset >/dev/null || need_apt+=(util-linux)
command -v valgrind >/dev/null || need_apt+=(valgrind)
[ -e /usr/include/ev.h ] || need_apt+=(libev-dev)
[ -e /usr/include/liburing.h ] || need_apt+=(liburing-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  fi
fi

if [ ! -e "$STAMP" ]; then
  [ -x "$PEERS/bin/python" ] || "$PYTHON" -m venv "$PEERS"
  "$PEERS/bin/python" -m pip install -q --upgrade pip
  "$PEERS/bin/python" -m pip install -q granian gunicorn gevent 'uvicorn' httptools websockets matplotlib flask django falcon
  for optional in bjoern fastwsgi; do
    if "$PEERS/bin/python" -m pip install -q "$optional" >"$PEERS/$optional-build.log" 2>&1 \
      && "$PEERS/bin/python" -c "import $optional" 2>>"$PEERS/$optional-build.log"; then
      echo "setup: $optional installed"
    else
      echo "setup: $optional did not build here (see $PEERS/$optional-build.log); it is skipped"
    fi
  done
  touch "$STAMP"
fi

"$ROOT/bench/build_tools.sh"
echo "setup: done (peers in $PEERS, C++ tools in $ROOT/build/bench)"

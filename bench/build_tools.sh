#!/usr/bin/env bash
# Builds the benchmark's C++ tools into build/bench (a private CMake build with
# THEFRAMEWORK_BENCH=ON: no Python, no tests): the pure C++ responder, the fixed-rate load
# generator and the WebSocket client. bench/setup.sh runs it; the WebSocket scripts run it when
# build/bench/ws_client is missing. Idempotent.
# Usage: bench/build_tools.sh [TARGET...]   (default: all three)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CMAKE="$(command -v cmake || echo "$ROOT/.venv/bin/cmake")"
"$CMAKE" -S "$ROOT" -B "$ROOT/build/bench" -DTHEFRAMEWORK_BENCH=ON -DTHEFRAMEWORK_PYTHON=OFF \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cpp_responder rate_client ws_client)
"$CMAKE" --build "$ROOT/build/bench" --target "${targets[@]}" -j2 >/dev/null

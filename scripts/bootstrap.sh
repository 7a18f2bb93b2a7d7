#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine, idempotently:
#   scripts/bootstrap.sh PYTHON VENV_DIR [EXTRA_PIP_ARGS...]
# Debian packages are installed with apt-get only when missing; the virtual environment is created
# when absent and given the build requirements (--no-build-isolation builds use them).
set -euo pipefail

python="${1:-python3}"
venv="${2:-.venv}"

apt_packages=(liburing-dev zlib1g-dev libgtest-dev clang clang-format libclang-rt-14-dev redis-server wrk haproxy
  nginx libnginx-mod-stream postgresql systemd)
missing=()
for package in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "bootstrap: creating $venv with $python"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "scikit-build-core>=0.11" "greenlet>=3.0" cmake ninja

#!/usr/bin/env bash
# Runs scripts/test_all_pythons.sh (the pre-fork, HTTP and monkey suites) inside a Debian unstable
# root that has CPython 3.14 (and the free-threaded 3.14t when Debian ships it), so `make test`
# covers the newest CPython even on a machine whose own Debian has none:
#   scripts/py314_root.sh [PYTEST_ARGS...]
# The root is made once with debootstrap (installed with apt-get when missing) from the mirror this
# machine's apt uses, and cached in build/py314-root (delete it to start over). The repository is
# bind-mounted at /src inside it; /proc, /dev, /dev/pts, /sys and /tmp are mounted for the run and
# unmounted on any exit. Exit status: that of test_all_pythons.sh (2 when the root cannot be made).
set -euo pipefail
cd "$(dirname "$0")/.."
repository=$(pwd)
root="$repository/build/py314-root"
# Debian packages of the root: the interpreter, a compiler, what the tests run (redis, wrk, openssl).
# libpython3.14-testsuite: CPython's own socket/selectors tests (test_monkey_unchanged.py).
packages=(python3.14 python3.14-dev python3.14-venv libpython3.14-testsuite g++ liburing-dev
  redis-server wrk openssl ca-certificates procps)
stamp="$root/.theframework-packages"  # the package list the cached root was made with

if [[ $(id -u) -ne 0 ]]; then
  echo "py314_root: needs root (debootstrap, chroot, mounts)" >&2
  exit 2
fi

# The mirror this machine's apt uses (deb822 sources first, then the one-line format).
mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [[ -n "$uri" ]] || uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "$uri"
}

# Mount points at or under $1 (deepest first), from /proc/self/mounts.
mounts_under() {
  awk -v prefix="$1" '$2 == prefix || index($2, prefix "/") == 1 {print $2}' /proc/self/mounts |
    sort -r
}

# Unmounts everything at or under $1 (a killed run's leftovers), deepest first.
unmount_under() {
  local target
  while read -r target; do
    [[ -n "$target" ]] && { umount "$target" 2>/dev/null || umount -l "$target" || true; }
  done < <(mounts_under "$1")
}

# Removes the directory $1 after unmounting what a killed earlier run left mounted in it; refuses
# (fails) while anything is still mounted there: the repository is bind-mounted inside the root.
remove_tree() {
  unmount_under "$1"
  if [[ -n "$(mounts_under "$1")" ]]; then
    echo "py314_root: still mounted under $1; not removing it" >&2
    return 1
  fi
  rm -rf --one-file-system "$1"
}

make_root() {
  if ! command -v debootstrap >/dev/null; then
    echo "py314_root: installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  local source
  source=$(mirror)
  if [[ -z "$source" ]]; then
    echo "py314_root: no Debian mirror in /etc/apt" >&2
    return 1
  fi
  mkdir -p "$(dirname "$root")"
  local attempt
  for attempt in 1 2; do  # a second try when the mirror dropped a download
    remove_tree "$root.partial" || return 1
    echo "py314_root: debootstrap unstable into $root (attempt $attempt)"
    debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
      unstable "$root.partial" "$source" >"$repository/build/py314-root.log" 2>&1 && break
    echo "py314_root: debootstrap failed (build/py314-root.log):" >&2
    tail -5 "$repository/build/py314-root.log" >&2
    ((attempt < 2)) || return 1
  done
  # Free-threaded CPython, where the archive has it (unstable had none in December 2026).
  if grep -q '^Package: python3.14-nogil$' "$root.partial"/var/lib/apt/lists/*_Packages; then
    chroot "$root.partial" apt-get install -y -qq python3.14-nogil >/dev/null
  else
    echo "py314_root: the archive has no free-threaded CPython (python3.14-nogil): 3.14 only"
  fi
  cp /etc/resolv.conf "$root.partial/etc/resolv.conf"
  echo "${packages[*]}" >"$root.partial/.theframework-packages"
  remove_tree "$root" || return 1
  mv "$root.partial" "$root"
}

if [[ ! -x "$root/usr/bin/python3.14" || "$(cat "$stamp" 2>/dev/null)" != "${packages[*]}" ]]; then
  started=$SECONDS
  make_root || exit 2
  echo "py314_root: root made in $((SECONDS - started)) s"
fi

unmount_under "$root"
mounted=()
cleanup() {
  local index
  for ((index = ${#mounted[@]} - 1; index >= 0; index--)); do
    umount "${mounted[index]}" 2>/dev/null || umount -l "${mounted[index]}" || true
  done
}
trap cleanup EXIT
mount_into() { # mount_into TARGET MOUNT_ARGS...
  local target="$root$1"
  shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounted+=("$target")
}
mount_into /proc -t proc proc
mount_into /sys -t sysfs sysfs
mount_into /dev --bind /dev
mount_into /dev/pts --bind /dev/pts
mount_into /tmp -t tmpfs tmpfs
mount_into /src --bind "$repository"
# This machine's certificate authorities (a TLS-inspecting proxy's included) for pip.
mount_into /etc/ssl/certs --bind -o ro /etc/ssl/certs
cp /etc/resolv.conf "$root/etc/resolv.conf"

# Inside the root: no apt (its packages came with debootstrap); pip reaches the same index as
# this machine's (its proxy variables are passed on). The PostgreSQL tests of the monkey suite are
# left out: the root has no PostgreSQL server yet (they run on the host's Pythons).
passed=()
for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL; do
  [[ -n "${!name:-}" ]] && passed+=("$name=${!name}")
done
chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 BOOTSTRAP_SKIP_APT=1 TEST_ALL_PYTHONS_ONLY="3.14 3.14t" \
  TEST_ALL_PYTHONS_SUITES="prefork http monkey" \
  PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 "${passed[@]}" \
  /bin/bash -c 'cd /src && scripts/test_all_pythons.sh "$@"' test_all_pythons \
  --deselect=tests/test_monkey_postgres.py "$@"

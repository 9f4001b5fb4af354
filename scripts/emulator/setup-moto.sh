#!/usr/bin/env bash
# Installs the AWS API emulator the adapter tests talk to: moto server from Debian trixie, in a
# minimal trixie tree made by debootstrap (python3-moto is not packaged for bookworm).
#
# The tree lives outside the repository, in a cache folder:
#   ${NEUROCAAS_MOTO_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/neurocaas/moto-trixie}
# A finished install holds the marker file .neurocaas-moto-ready; anything else found there is a
# half-done install and is removed and redone. Several processes may call this at once: they
# serialise on a lock file beside the folder, and all but the first find the marker.
#
# Needs root (debootstrap and chroot do) and Debian's package mirror. Usage:
#   scripts/emulator/setup-moto.sh           install if missing, print where it is
#   scripts/emulator/setup-moto.sh --print-root   only print the folder
set -euo pipefail

readonly SUITE=trixie
readonly MIRROR="${NEUROCAAS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
readonly PACKAGES=python3-moto,python3-flask,python3-flask-cors,python3-cffi-backend
readonly MARKER_NAME=.neurocaas-moto-ready
readonly LOCK_WAIT_SECONDS=900

cache_home="${XDG_CACHE_HOME:-$HOME/.cache}"
root="${NEUROCAAS_MOTO_ROOT:-$cache_home/neurocaas/moto-trixie}"
root="${root%/}"
readonly root
readonly marker="$root/$MARKER_NAME"
readonly partial="$root.partial"
readonly lock="$root.lock"

say() { printf 'setup-moto: %s\n' "$*" >&2; }
fail() {
  printf 'setup-moto: error: %s\n' "$*" >&2
  exit 1
}

if [[ "${1:-}" == "--print-root" ]]; then
  printf '%s\n' "$root"
  exit 0
fi
if [[ $# -gt 0 ]]; then
  fail "unknown argument \"$1\"; usage: $0 [--print-root]"
fi

# Guard every rm -rf below: the folder must be a dedicated absolute path, never / or a home folder.
case "$root" in
  /*) ;;
  *) fail "NEUROCAAS_MOTO_ROOT must be an absolute path, got \"$root\"" ;;
esac
for forbidden in / "$HOME" /root /home /tmp /usr /etc /var /opt /srv; do
  if [[ "$root" == "${forbidden%/}" || "$root" == / ]]; then
    fail "refusing to use \"$root\" as the emulator folder: it would be deleted on a failed install; set NEUROCAAS_MOTO_ROOT to a dedicated folder"
  fi
done

if [[ -f "$marker" ]]; then
  say "moto emulator already installed in $root"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  fail "must run as root: debootstrap and chroot need it (run it with sudo, or as root in the dev container); nothing was changed"
fi

# Unmounts whatever a killed debootstrap left mounted (proc, sys, dev) under a folder, so the
# folder can be removed without touching the host's /proc or /dev.
unmount_under() {
  local dir="$1" target
  [[ -d "$dir" ]] || return 0
  # Field 5 of mountinfo is the mount point; deepest first.
  while read -r target; do
    say "unmounting $target left by an interrupted install"
    umount -l "$target" || fail "could not unmount $target; unmount it by hand and run again"
  done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

remove_tree() {
  local dir="$1"
  [[ -e "$dir" ]] || return 0
  unmount_under "$dir"
  rm -rf --one-file-system -- "$dir"
}

mkdir -p -- "$(dirname -- "$root")" || fail "cannot create $(dirname -- "$root"); check its permissions"
exec 9>"$lock" || fail "cannot open the lock file $lock; check the permissions of $(dirname -- "$root")"
if ! flock -n 9; then
  say "another process is installing the emulator; waiting for it (at most ${LOCK_WAIT_SECONDS} s)"
  flock -w "$LOCK_WAIT_SECONDS" 9 || fail "gave up waiting for the lock $lock after ${LOCK_WAIT_SECONDS} s"
fi

# The holder of the lock before us may have finished the job.
if [[ -f "$marker" ]]; then
  say "moto emulator already installed in $root"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 ||
    fail "debootstrap is missing and there is no apt-get to install it; install the debootstrap package"
  say "installing debootstrap with apt-get"
  apt-get update -q >&2 || fail "apt-get update failed; check access to the Debian mirror"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2 ||
    fail "apt-get could not install debootstrap; install it by hand (apt-get install debootstrap)"
  command -v debootstrap >/dev/null 2>&1 ||
    fail "debootstrap is installed but not on PATH ($PATH); add /usr/sbin to PATH"
fi
command -v chroot >/dev/null 2>&1 || fail "chroot is not on PATH ($PATH); add /usr/sbin to PATH"

for leftover in "$root" "$partial"; do
  if [[ -e "$leftover" ]]; then
    say "removing the half-done install $leftover"
    remove_tree "$leftover"
  fi
done

started=$SECONDS
say "debootstrapping a minimal $SUITE with $PACKAGES into $partial (about a minute)"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$partial" "$MIRROR" >&2; then
  if [[ -f "$partial/debootstrap/debootstrap.log" ]]; then
    say "last lines of $partial/debootstrap/debootstrap.log:"
    tail -n 20 "$partial/debootstrap/debootstrap.log" >&2 || true
  fi
  remove_tree "$partial"
  fail "debootstrap of $SUITE from $MIRROR failed (see above); check access to the mirror and free disk space"
fi
# debootstrap unmounts what it mounted; make sure, before the tree is moved or used.
unmount_under "$partial"

# The apt lists and package cache are not needed to run moto.
rm -rf --one-file-system -- "$partial/var/cache/apt/archives/"*.deb "$partial/var/lib/apt/lists/"* || true

say "checking that moto_server starts in the new tree"
if ! chroot "$partial" moto_server --help >/dev/null; then
  remove_tree "$partial"
  fail "moto_server does not run in the $SUITE tree; the python3-moto package may have changed"
fi
version="$(chroot "$partial" python3 -c 'import moto; print(moto.__version__)')"

printf 'suite=%s\nmoto=%s\ninstalled_at=%s\n' "$SUITE" "$version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$partial/$MARKER_NAME"
mv -T -- "$partial" "$root"
say "moto $version installed in $root in $((SECONDS - started)) s"

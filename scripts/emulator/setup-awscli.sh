#!/usr/bin/env bash
# Installs the AWS CLI v2 from Debian trixie (package awscli) into the emulator's trixie tree
# made by setup-moto.sh, for the sandbox's emulated instances: they run the real ncap-runner.sh
# with the real `aws` pointed at the emulator (scripts/emulator/aws-cli.sh runs it from the tree).
#
# Installs the moto tree first if it is missing (setup-moto.sh). A finished install holds the
# marker file .neurocaas-awscli-ready in the tree. Several processes may call this at once:
# they serialise on the same lock file as setup-moto.sh. Needs root (chroot, apt-get) and
# Debian's package mirror. Usage:
#   scripts/emulator/setup-awscli.sh
set -euo pipefail

readonly MARKER_NAME=.neurocaas-awscli-ready
readonly LOCK_WAIT_SECONDS=900
# The runner writes results with `aws s3api put-object --if-none-match`, which the CLI has
# since 2.22 (S3 conditional writes); trixie ships 2.23.
readonly MIN_VERSION=2.22.0

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
root="$(bash "$here/setup-moto.sh" --print-root)"
readonly root
readonly marker="$root/$MARKER_NAME"
readonly lock="$root.lock"

say() { printf 'setup-awscli: %s\n' "$*" >&2; }
fail() {
  printf 'setup-awscli: error: %s\n' "$*" >&2
  exit 1
}

if [[ $# -gt 0 ]]; then fail "unknown argument \"$1\"; usage: $0"; fi
if [[ -f "$marker" ]]; then
  say "AWS CLI already installed in $root"
  exit 0
fi
if [[ "$(id -u)" -ne 0 ]]; then
  fail "must run as root: chroot and apt-get need it (run it with sudo, or as root in the dev container); nothing was changed"
fi

bash "$here/setup-moto.sh"

exec 9>"$lock" || fail "cannot open the lock file $lock"
if ! flock -n 9; then
  say "another process is installing into the emulator tree; waiting for it (at most ${LOCK_WAIT_SECONDS} s)"
  flock -w "$LOCK_WAIT_SECONDS" 9 || fail "gave up waiting for the lock $lock after ${LOCK_WAIT_SECONDS} s"
fi
if [[ -f "$marker" ]]; then
  say "AWS CLI already installed in $root"
  exit 0
fi

started=$SECONDS
say "installing awscli (trixie) into $root with apt-get"
in_tree() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
in_tree apt-get update -q >&2 || fail "apt-get update in $root failed; check access to the Debian mirror"
in_tree apt-get install -y -q --no-install-recommends awscli >&2 || fail "apt-get could not install awscli into $root (see above)"
rm -rf --one-file-system -- "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* || true

version_line="$(in_tree aws --version 2>&1)" || fail "aws --version does not run in $root: $version_line"
version="${version_line#aws-cli/}"
version="${version%% *}"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "cannot read the AWS CLI version from \"$version_line\""
if [[ "$(printf '%s\n%s\n' "$MIN_VERSION" "$version" | sort -V | head -n 1)" != "$MIN_VERSION" ]]; then
  fail "the AWS CLI in $root is $version; the runner needs at least $MIN_VERSION (put-object --if-none-match)"
fi
printf 'awscli=%s\ninstalled_at=%s\n' "$version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$marker.part"
mv -f -- "$marker.part" "$marker"
say "AWS CLI $version installed in $root in $((SECONDS - started)) s"

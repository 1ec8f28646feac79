#!/usr/bin/env bash
# Make an `asterisk` binary available and print how to run it.
#
# A system asterisk (Ubuntu, or Debian sid) is used as it is. Debian bookworm has
# none, so we build a minimal Debian sid root with debootstrap and install the
# distribution's asterisk package into it. The root is cached outside the work
# tree, so a second run (or a fresh clone on the same machine) takes seconds.
#
# Prints one line: "system" or "chroot <ROOT>".
set -euo pipefail

ROOT="${AMIVONO_ASTERISK_ROOT:-/var/cache/amivono/asterisk-root}"
MIRROR="${AMIVONO_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Packages installed in the root besides asterisk: the sound prompts the carrier
# simulator and IVR use, and ca-certificates for apt over https mirrors.
PKGS="asterisk asterisk-core-sounds-en-gsm asterisk-moh-opsound-gsm"

log() { echo "install.sh: $*" >&2; }

if [ -z "${AMIVONO_FORCE_CHROOT:-}" ] && command -v asterisk >/dev/null 2>&1; then
  echo system
  exit 0
fi

if [ -x "$ROOT/usr/sbin/asterisk" ] && [ -f "$ROOT/.amivono-ready" ]; then
  echo "chroot $ROOT"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
fi

# Build in a temporary folder and move it in place at the end, so an
# interrupted build is never mistaken for a finished one.
work="$ROOT.building.$$"
rm -rf "$work"
mkdir -p "$(dirname "$ROOT")"
cleanup() { umount "$work/proc" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

log "debootstrap sid into $work (a few minutes, once)"
debootstrap --variant=minbase sid "$work" "$MIRROR" >&2
mount -t proc proc "$work/proc"
cp /etc/resolv.conf "$work/etc/resolv.conf" 2>/dev/null || true
# The package mirror may be a snapshot whose Release file reads as expired.
chroot "$work" apt-get -o Acquire::Check-Valid-Until=false update -qq >&2
chroot "$work" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  --no-install-recommends $PKGS >&2
chroot "$work" apt-get clean >&2
umount "$work/proc"
touch "$work/.amivono-ready"
rm -rf "$ROOT"
mv "$work" "$ROOT"
trap - EXIT
log "asterisk installed in $ROOT"
echo "chroot $ROOT"

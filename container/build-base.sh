#!/usr/bin/env bash
# Make the Debian 12 base image that container/Dockerfile builds on.
#
# Where a registry answers, the official image is pulled and tagged; otherwise the
# same bookworm userland is bootstrapped from Debian packages and imported, so both
# paths give the Dockerfile an identical starting point.
#
# usage: container/build-base.sh [TAG]     (default: sandbox-ide-base:bookworm)
set -euo pipefail
tag="${1:-sandbox-ide-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag is present"
  exit 0
fi

if [ "${SANDBOX_BASE_FROM_REGISTRY:-auto}" != "no" ] \
   && timeout 20 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
  docker tag debian:bookworm-slim "$tag"
  echo "$tag tagged from debian:bookworm-slim"
  exit 0
fi

command -v debootstrap >/dev/null || {
  echo "debootstrap is missing, and no registry gave debian:bookworm-slim:" \
       "install it with 'apt-get install -y debootstrap'" >&2
  exit 1
}
root="$(mktemp -d /var/tmp/sandbox-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "bootstrapping Debian bookworm from $mirror into $root"
# Its progress (I: Retrieving/Unpacking/Configuring …) is what `make run` shows.
debootstrap --variant=minbase bookworm "$root" "$mirror"
# Keep the image small and the apt lists out of it, as the official image does.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$tag" >/dev/null
echo "$tag made with debootstrap"

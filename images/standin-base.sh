#!/bin/sh
# A stand-in for the Dockerfiles' base image where it cannot be pulled:
# Debian bookworm's Python 3.11 with `python` and `pip` on PATH, as the
# official Python image has them. debootstrap lays out a minimal bookworm
# with python3, a venv at /usr/local/python gives python and pip, and
# `docker import` turns the tree into an image. Needs root and debootstrap.
#   images/standin-base.sh <image ref> <Debian mirror URL>
set -eu
ref=$1
mirror=$2
tree=$(mktemp -d "${TMPDIR:-/tmp}/cnnvsmlp-base-XXXXXX")
trap 'rm -rf "$tree"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$tree/rootfs" "$mirror" >"$tree/debootstrap.log" 2>&1 \
  || { tail -n 1 "$tree/debootstrap.log" >&2; exit 1; }
chroot "$tree/rootfs" python3 -m venv /usr/local/python
rm -rf "$tree/rootfs/var/cache/apt/archives" "$tree/rootfs/var/lib/apt/lists"
tar -C "$tree/rootfs" -c . | docker import \
  --change "ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change 'CMD ["python3"]' - "$ref" >/dev/null

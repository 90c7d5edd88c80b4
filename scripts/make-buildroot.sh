#!/usr/bin/env bash
# Creates the release build root: a Debian 11 (bullseye, glibc 2.31, g++ 10) userland from
# Debian's packages, in which scripts/release.js builds the linux-x64 addon so that it loads on
# glibc >= 2.31, and then loads it there with Debian 11's node. Needs root and debootstrap
# (apt-get install debootstrap); about 600 MB.
#   scripts/make-buildroot.sh [DIR]      (default: .buildroot/bullseye)
set -euo pipefail
dir=${1:-"$(dirname "$0")/../.buildroot/bullseye"}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -x "$dir/usr/bin/g++" ] && [ -x "$dir/usr/bin/node" ]; then
  echo "build root already at $dir"
  exit 0
fi
if [ ! -x "$dir/usr/bin/g++" ]; then
  mkdir -p "$dir"
  debootstrap --variant=minbase --include=g++,cmake,make,binutils,nodejs bullseye "$dir" "$mirror"
else
  chroot "$dir" apt-get install -y --no-install-recommends nodejs
fi
chroot "$dir" g++ --version | head -1
chroot "$dir" ldd --version | head -1

#!/usr/bin/env bash
# Installs what building runoff needs on a fresh Debian machine: cmake and a C compiler for
# Pingora's zlib-ng. Safe to run again: it installs only what is missing.
set -euo pipefail
source "$(dirname "$0")/install-lib.sh"

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v curl >/dev/null 2>&1 || missing+=(curl)
apt_install "${missing[@]}"
command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install Rust (https://rustup.rs)" >&2; exit 1; }

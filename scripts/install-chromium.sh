#!/usr/bin/env bash
# Installs Debian's chromium (for the report's rendering test) when missing. Never downloads a
# browser of its own; where it cannot install, the report test is skipped with this message.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then exit 0; fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "note: chromium is not installed and this user cannot install packages; the report rendering test will be skipped." >&2
  echo "      install it with: sudo apt-get install chromium" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "note: chromium is not installed and apt-get is not available; the report rendering test will be skipped." >&2
  exit 0
fi
echo "Installing Debian package chromium (for the report rendering test) ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null

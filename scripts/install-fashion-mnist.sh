#!/usr/bin/env bash
# Installs Debian's dataset-fashion-mnist package (the IDX files under /usr/share/datasets/fashion-mnist)
# when it is missing. Needs root or sudo; says clearly what to do where neither is available.
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ] || [ -f "$dir/train-images-idx3-ubyte" ]; then exit 0; fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "Fashion-MNIST is missing and this user cannot install packages." >&2
  echo "Install it with: sudo apt-get update && sudo apt-get install dataset-fashion-mnist" >&2
  echo "(or put the four IDX files in a directory and pass it as the data set's directory)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "Fashion-MNIST is missing and apt-get is not available: install the Debian package dataset-fashion-mnist," >&2
  echo "or put the four IDX files in a directory and pass it as the data set's directory." >&2
  exit 1
fi
echo "Installing Debian package dataset-fashion-mnist ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
echo "Fashion-MNIST installed in $dir"

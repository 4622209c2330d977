#!/usr/bin/env bash
# Rebuild requirements.lock from a fresh virtual environment:
#   bash .ci/make_lock.sh
# Installs the package with its dev and book extras and the tested torch trio, then freezes the
# result (playwright is in dev: it drives Debian's chromium, installed by .ci/run, not its own).
# torch's CUDA libraries exist only as Linux x86_64 wheels: those lines get a marker so the
# same lock installs on macOS and Linux ARM too (torch then pulls no CUDA libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0 -e ".[dev,book]"
{
  echo "# Exact versions the tests run with. Made by: bash .ci/make_lock.sh"
  echo "# Install: pip install -r requirements.lock && pip install --no-deps -e ."
  "$tmp/venv/bin/pip" freeze --all --exclude-editable | grep -vE "^(mmcourse|pip)==" |
    sed -E '/^(nvidia-|cuda-|triton==)/ s/$/ ; sys_platform == "linux" and platform_machine == "x86_64"/'
} > requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"

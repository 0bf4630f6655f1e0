#!/usr/bin/env bash
# Install the Debian packages the test suite needs (scripts/system-packages.txt: Chromium
# for the dashboard's browser test), only those missing. `make test` runs this, so the
# README's test command sets up a fresh machine by itself, not only CI.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r package; do
  [ -n "$package" ] && ! dpkg -s "$package" >/dev/null 2>&1 && missing+=("$package")
done < <(grep -v '^#' scripts/system-packages.txt)
[ "${#missing[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "system_packages: need Debian packages ${missing[*]} and this machine has no apt-get" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "system_packages: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Installs what stampede's tests need when it is missing: Debian packages for the real
# peers the tests start (nginx, ffmpeg/ffprobe, prometheus, chromium, wrk) and the Go
# modules. Safe to run again: it only installs what is absent.
set -euo pipefail

# command -> Debian package
declare -A want=(
  [nginx]=nginx
  [ffmpeg]=ffmpeg
  [ffprobe]=ffmpeg
  [prometheus]=prometheus
  [chromium]=chromium
  [wrk]=wrk
)

missing=()
for cmd in "${!want[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${want[$cmd]}")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "deps: installing Debian packages: $pkgs"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  else
    echo "deps: missing $pkgs and no apt-get here; install them by hand" >&2
    exit 1
  fi
fi

# Debian's nginx package starts a system nginx on :80; the tests run their own on free
# ports, so stop it where we can (ignore failure: containers have no init system).
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  (service nginx stop >/dev/null 2>&1 || true)
fi

go mod download
echo "deps: ok"

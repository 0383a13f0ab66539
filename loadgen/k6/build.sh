#!/usr/bin/env bash
# Builds k6 with stampede's extension (k6/x/stampede) the way xk6 does, without xk6:
# a throw-away module named k6 whose main is loadgen/k6/cmd/k6/main.go (k6cmd.Execute()
# plus a blank import of the extension), requiring go.k6.io/k6 and the extension, with
# the replaces `xk6 build --with github.com/stampede-live/stampede/loadgen/k6=./loadgen/k6
# --replace github.com/stampede-live/stampede=.` adds, then tidy and a static build
# (CGO off, -trimpath -ldflags '-s -w', as xk6 builds).
#
#   loadgen/k6/build.sh [OUT]          # default OUT: bin/k6 at the repository root
#
# The binary is cached, keyed on the Go version and every source that goes into it
# (loadgen/, internal/, both go.mod/go.sum, this script): a second build of the same
# sources is a copy. Cache: $STAMPEDE_K6_CACHE, default $(go env GOCACHE)/../stampede-k6;
# the newest 3 builds are kept.
set -euo pipefail

GO=${GO:-go}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/bin/k6}
case $out in /*) ;; *) out=$PWD/$out ;; esac

k6_version=v1.8.1
ext=github.com/stampede-live/stampede/loadgen/k6
cache=${STAMPEDE_K6_CACHE:-$(dirname "$($GO env GOCACHE)")/stampede-k6}
key=$(
  cd "$root"
  {
    $GO version
    echo "$k6_version"
    find loadgen internal -type f \( -name '*.go' -o -path '*/assets/*' -o -name 'go.mod' -o -name 'go.sum' \) \
      ! -name '*_test.go' ! -path '*/testdata/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    sha256sum go.mod go.sum loadgen/k6/build.sh
  } | sha256sum | cut -c1-16
)
bin=$cache/k6-$key

if [ -x "$bin" ]; then
  echo "k6: cached build $key"
else
  start=$(date +%s)
  work=$(mktemp -d "${TMPDIR:-/tmp}/stampede-k6-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  cp "$root/loadgen/k6/cmd/k6/main.go" "$work/main.go"
  (
    cd "$work"
    export GOFLAGS=-mod=mod GOWORK=off
    $GO mod init k6 >/dev/null 2>&1
    $GO mod edit -go="$(sed -n 's/^go //p' "$root/go.mod")"
    $GO mod edit -require="go.k6.io/k6@$k6_version" \
      -require="$ext@v0.0.0-00010101000000-000000000000" \
      -replace="$ext=$root/loadgen/k6" \
      -replace="github.com/stampede-live/stampede=$root"
    $GO mod tidy >tidy.log 2>&1 || { cat tidy.log >&2; exit 1; }
    CGO_ENABLED=0 $GO build -trimpath -ldflags='-s -w' -o k6 .
  )
  mkdir -p "$cache"
  mv "$work/k6" "$bin.tmp.$$" && mv "$bin.tmp.$$" "$bin"
  # keep the newest 3 builds
  ls -1t "$cache"/k6-* 2>/dev/null | grep -v '\.tmp\.' | tail -n +4 | xargs -r rm -f
  echo "k6: built $key in $(($(date +%s) - start)) s"
fi
mkdir -p "$(dirname "$out")"
cp "$bin" "$out.tmp.$$" && mv "$out.tmp.$$" "$out"
echo "k6: $out"

#!/bin/sh
# Build benchmarks/.bin/etcdref, etcdbench's Go reference client, offline against etcd's Go clients as
# Debian packages them:  apt-get install golang-go golang-etcd-server-dev
# GOPATH mode (no modules): the sources in benchmarks/goref import go.etcd.io/etcd/clientv3 and
# go.etcd.io/etcd/client from /usr/share/gocode. ETCDREF_OUT puts the binary elsewhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
gocode=${GOCODE:-/usr/share/gocode}
if ! command -v go >/dev/null 2>&1; then
    echo "build_goref.sh: 'go' is not installed (apt-get install golang-go golang-etcd-server-dev)" >&2
    exit 3
fi
if [ ! -d "$gocode/src/go.etcd.io/etcd/clientv3" ]; then
    echo "build_goref.sh: $gocode/src/go.etcd.io/etcd/clientv3 is missing (apt-get install golang-etcd-server-dev)" >&2
    exit 3
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=${ETCDREF_OUT:-$here/.bin/etcdref}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
mkdir -p "$tmp/src/etcdref" "$(dirname "$out")"
cp "$here"/goref/*.go "$tmp/src/etcdref/"
cd "$tmp/src/etcdref"
# The build cache is reused between builds when go has one (it needs $HOME); else a throwaway one.
cache=${GOCACHE:-$(go env GOCACHE 2>/dev/null || true)}
case "$cache" in ""|off) cache="$tmp/cache" ;; esac
GO111MODULE=off GOPATH="$tmp:$gocode" GOFLAGS= GOCACHE="$cache" \
    go build -o "$out" .
echo "$out"

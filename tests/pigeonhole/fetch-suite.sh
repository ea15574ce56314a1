#!/bin/sh
# Fetch Pigeonhole 0.5.19's test suite (tests/**/*.svtest) from Debian's source
# package of dovecot and unpack it under build/pigeonhole. Not copied into the
# repository: apt fetches the orig-pigeonhole tarball through a private deb-src
# source list (bookworm main, the machine's own mirror), so the tarball's SHA256
# comes from the signed Sources index. The system's apt state is not touched:
# lists and caches live under build/pigeonhole/apt. A second run costs nothing.
#
# usage: tests/pigeonhole/fetch-suite.sh [BUILD_DIR]   (default: build/pigeonhole)
set -eu

BUILD=${1:-build/pigeonhole}
TARBALL=dovecot_2.3.19.1+dfsg1.orig-pigeonhole.tar.gz
SUITE_DIR=dovecot-2.3-pigeonhole-0.5.19

if [ -f "$BUILD/$SUITE_DIR/tests/testsuite.svtest" ] && [ -d "$BUILD/$SUITE_DIR/examples" ]; then
    exit 0
fi
mkdir -p "$BUILD/apt/lists/partial" "$BUILD/apt/cache/archives/partial" "$BUILD/apt/etc"
BUILD=$(cd "$BUILD" && pwd)

if [ ! -f "$BUILD/$TARBALL" ]; then
    # The first Debian (not -security) mirror the machine uses; deb.debian.org
    # when there is none.
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' \
          /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=http://deb.debian.org/debian
    cat > "$BUILD/apt/etc/sources.list.d.sources" <<SRC
Types: deb-src
URIs: $uri
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    APT="-o Dir::Etc::sourcelist=$BUILD/apt/etc/sources.list.d.sources
         -o Dir::Etc::sourceparts=- -o Dir::State::Lists=$BUILD/apt/lists
         -o Dir::Cache=$BUILD/apt/cache -o APT::Sandbox::User=root"
    # shellcheck disable=SC2086
    apt-get -qq $APT update
    # shellcheck disable=SC2086
    line=$(cd "$BUILD" && apt-get -qq $APT source --print-uris dovecot \
           | grep "orig-pigeonhole.tar.gz")
    url=$(echo "$line" | awk '{print $1}' | tr -d "'")
    name=$(echo "$line" | awk '{print $2}')
    hash=$(echo "$line" | awk '{print $4}')
    if [ "$name" != "$TARBALL" ]; then
        echo "fetch-suite: Debian's dovecot source has $name, expected $TARBALL" >&2
        exit 1
    fi
    # apt-helper checks the hash from the signed index before keeping the file.
    /usr/lib/apt/apt-helper $APT download-file "$url" "$BUILD/$TARBALL.part" "$hash"
    mv "$BUILD/$TARBALL.part" "$BUILD/$TARBALL"
fi
# examples/: tests/execute/examples.svtest compiles and runs them.
tar -xzf "$BUILD/$TARBALL" -C "$BUILD" "$SUITE_DIR/tests" "$SUITE_DIR/examples" \
    "$SUITE_DIR/src/testsuite"
test -f "$BUILD/$SUITE_DIR/tests/testsuite.svtest"

#!/bin/sh
# build-rpm.sh -- build mailslot's RPM from this checkout (`make rpm`).
#
#   packaging/build-rpm.sh [OUTDIR]       default OUTDIR: dist/ of the checkout
#
# Packs the tree as it is (without .git, the venv and build products) into the
# spec's Source0 tarball and runs rpmbuild -bb with a private _topdir; the binary
# RPM ends up in OUTDIR. On Debian, rpmbuild comes from the `rpm` package and has
# no RPM database of build dependencies, hence --nodeps (gcc, make and python3 are
# the Debian ones).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$REPO/dist}
SPEC=$REPO/packaging/rpm/mailslot.spec
VERSION=$(sed -n 's/^Version:[[:space:]]*//p' "$SPEC")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailslot-rpm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

mkdir -p "$WORK/SOURCES" "$WORK/tree/mailslot-$VERSION"
(cd "$REPO" && tar --exclude=./.git --exclude=./.venv --exclude=./build \
    --exclude=./dist --exclude=./helper_c/out --exclude=./demo/out \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude='*.egg-info' -cf - .) \
    | tar -xf - -C "$WORK/tree/mailslot-$VERSION"
tar -C "$WORK/tree" -czf "$WORK/SOURCES/mailslot-$VERSION.tar.gz" "mailslot-$VERSION"

rpmbuild -bb --nodeps --define "_topdir $WORK" "$SPEC"
mkdir -p "$OUT"
find "$WORK/RPMS" -name '*.rpm' -exec mv {} "$OUT"/ \;
ls "$OUT"/*.rpm

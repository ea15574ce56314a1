#!/bin/sh
# build-deb.sh -- build mailslot's Debian package from this checkout (`make deb`).
#
#   packaging/build-deb.sh [OUTDIR]       default OUTDIR: dist/ of the checkout
#
# Copies the tree as it is (without .git, the venv and build products) into a temp
# dir, puts packaging/debian/ there as debian/, and runs `dpkg-buildpackage -us -uc
# -b`; the .deb, .buildinfo and .changes end up in OUTDIR. With DEB_VERSION set, a
# changelog entry for that version is added first (the tests build an upgrade so).
# Needs debhelper, dh-python, dpkg-dev (the Makefile's DEB_PKG).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$REPO/dist}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailslot-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
SRC=$WORK/mailslot

mkdir "$SRC"
(cd "$REPO" && tar --exclude=./.git --exclude=./.venv --exclude=./build \
    --exclude=./dist --exclude=./helper_c/out --exclude=./demo/out \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude='*.egg-info' -cf - .) \
    | tar -xf - -C "$SRC"
cp -R "$SRC/packaging/debian" "$SRC/debian"

if [ -n "${DEB_VERSION:-}" ]; then
    {
        printf 'mailslot (%s) unstable; urgency=medium\n\n' "$DEB_VERSION"
        printf '  * Local build %s.\n\n' "$DEB_VERSION"
        printf ' -- mailslot maintainers <maintainers@users.noreply.r-seed-0950e08f.example>  %s\n\n' \
            "$(date -R)"
        cat "$SRC/debian/changelog"
    } > "$WORK/changelog"
    mv "$WORK/changelog" "$SRC/debian/changelog"
fi

(cd "$SRC" && dpkg-buildpackage -us -uc -b)
mkdir -p "$OUT"
mv "$WORK"/*.deb "$WORK"/*.buildinfo "$WORK"/*.changes "$OUT"/
ls "$OUT"/*.deb

"""Fixtures of the packaging tests: the packages, built once per session.

See tests/packaging/packagetest.py. Building needs the Makefile's DEB_PKG tools;
installing needs root. Without them the tests skip and say why.
"""
import shutil
import tempfile

import pytest

from tests.packaging.packagetest import UPGRADE_VERSION, build_deb, build_rpm, missing_tools


@pytest.fixture(scope="session")
def debs():
    """(first .deb, upgrade .deb): two builds of this tree, the second a newer version."""
    missing = missing_tools("dpkg-buildpackage", "dh", "dh_python3")
    if missing:
        pytest.skip(f"cannot build the .deb: {', '.join(missing)} missing "
                    "(make deps-test installs debhelper, dh-python, dpkg-dev)")
    out = tempfile.mkdtemp(prefix="mslt-debs-")
    try:
        first = build_deb(f"{out}/first")
        upgrade = build_deb(f"{out}/upgrade", version=UPGRADE_VERSION)
        yield first, upgrade
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="session")
def rpm_package():
    missing = missing_tools("rpmbuild", "rpm")
    if missing:
        pytest.skip(f"cannot build the RPM: {', '.join(missing)} missing "
                    "(make deps-test installs Debian's rpm package)")
    out = tempfile.mkdtemp(prefix="mslt-rpm-")
    try:
        yield build_rpm(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)

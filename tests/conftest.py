"""Shared fixtures: the installed engine, and system users to deliver as.

Plain helpers (world_tempdir, ensure_user, run_as, needs_root) live in
tests/support.py.
"""

import os
import shutil
import subprocess

import pytest

from tests.support import IS_ROOT, REPO, ensure_user, world_tempdir


@pytest.fixture(scope="session")
def installed():
    """Install the engine (make install) into a temp DESTDIR; return its lib dir."""
    dest = world_tempdir("mailslot-inst-")
    # make install sets every mode itself; a blanket chmod here would turn a setuid
    # 4750 relay into 4755.
    subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    yield os.path.join(dest, "usr/lib/mailslot")
    shutil.rmtree(dest, ignore_errors=True)


@pytest.fixture(scope="session")
def mail_users():
    """Two ordinary system users, mslt-eng1 and mslt-eng2, with homes in a temp dir.

    The users are kept after the session (created once, reused): test runs that
    overlap on one machine must not delete each other's users mid-run.
    """
    if not IS_ROOT:
        pytest.skip("needs root to create test users (CI runs as root)")
    base = world_tempdir("mailslot-homes-")
    users = []
    for name in ("mslt-eng1", "mslt-eng2"):
        ensure_user(name, os.path.join(base, name))
        subprocess.run(["usermod", "--home", os.path.join(base, name), name], check=True)
        users.append(ensure_user(name, os.path.join(base, name)))
    yield users
    shutil.rmtree(base, ignore_errors=True)

"""Shared fixtures: the installed engine, and system users to deliver as.

Plain helpers (world_tempdir, ensure_user, run_as, needs_root) live in
tests/support.py.
"""

import os
import shutil
import subprocess

import pytest

from tests.support import IS_ROOT, REPO, ensure_user, remove_user, world_tempdir


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
    """Two ordinary system users of this test session, with homes in a temp dir.

    Their names (mslt-e<token>1 and ...2) are new for every session, so that test
    runs overlapping on one machine never share, move or delete each other's users;
    they are removed when the session ends.
    """
    if not IS_ROOT:
        pytest.skip("needs root to create test users (CI runs as root)")
    base = world_tempdir("mailslot-homes-")
    token = os.urandom(3).hex()
    users = [ensure_user(f"mslt-e{token}{n}", os.path.join(base, f"u{n}")) for n in (1, 2)]
    yield users
    for user in users:
        remove_user(user.pw_name)
    shutil.rmtree(base, ignore_errors=True)

"""Fixtures for the dotlock tests: test users, a test build, an installed copy.

See tests/dotlock/dotlocktest.py. Everything needs root; elsewhere the tests skip.
"""
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.dotlock.dotlocktest import (CHANGE_TIMEOUT, HELPER_C, USERS, DotlockInstall,
                                      remove_accounts)


@pytest.fixture(scope="session")
def dotlock_accounts():
    if os.geteuid() != 0:
        pytest.skip("dotlock tests install a setgid binary and create users: run as root")
    for tool in ("setpriv", "useradd", "make", "cc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    remove_accounts()
    try:
        for user in USERS:
            subprocess.run(["useradd", "-r", "-M", "-U", "-s", "/usr/sbin/nologin", user],
                           check=True)
        yield {u: pwd.getpwnam(u) for u in USERS}
    finally:
        remove_accounts()


@pytest.fixture(scope="session")
def dotlock_install(dotlock_accounts):
    base = Path(tempfile.mkdtemp(prefix="mslt-dotlock-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        inst = DotlockInstall(base, dotlock_accounts)
        inst.bin.mkdir(mode=0o755)
        inst.spool.mkdir()
        os.chown(inst.spool, 0, inst.mail_gid)
        os.chmod(inst.spool, 0o2775)
        subprocess.run(["make", "-s", "-C", str(HELPER_C), f"OUT={inst.build}",
                        f"SPOOL_DIR={inst.spool}", f"POLICY_PATH={base}/policy",
                        "LOCK_ATTEMPTS=2", f"DOTLOCK_CHANGE_TIMEOUT={CHANGE_TIMEOUT}",
                        "all", "asan", "debug"], check=True)
        for variant, name in (("", "mailslot-dotlock"), ("asan", "mailslot-dotlock.asan"),
                              ("debug", "mailslot-dotlock.debug")):
            dest = inst.bin / name
            shutil.copy(inst.build / variant / "mailslot-dotlock", dest)
            os.chown(dest, 0, inst.mail_gid)
            # The instrumented copies are plain: valgrind cannot run a set-group-id
            # program and the sanitizers ignore their options in secure mode.
            os.chmod(dest, 0o2755 if variant == "" else 0o0755)
        yield inst
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def dotlock(dotlock_install):
    """The installed helper with an empty spool directory before each test."""
    for p in dotlock_install.spool.iterdir():
        p.unlink()
    return dotlock_install

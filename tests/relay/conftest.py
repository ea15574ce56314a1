"""Fixtures for the relay tests: test accounts, a test build, an installed copy.

See tests/relay/relaytest.py for what they build. Everything needs root; elsewhere
the tests skip and say why.
"""
import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.relay.relaytest import (ALICE, BOB, EXTRA, FARGID, GROUPS, HELPER_C, HERE,
                                   INSIDER, LOOKUP, MTA, OUTSIDER, SECMAIL, USERS, FAR,
                                   FARGROUP, RelayInstall, _run, remove_accounts)


@pytest.fixture(scope="session")
def accounts():
    """Create the test groups and users; yield {name: passwd entry}; remove them."""
    if os.geteuid() != 0:
        pytest.skip("relay tests install a setuid-root binary and create users: run as root")
    for tool in ("setpriv", "useradd", "groupadd", "make", "cc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    remove_accounts()
    try:
        for group in GROUPS:
            _run("groupadd", "-r", group)
        _run("useradd", "-r", "-M", "-s", "/usr/sbin/nologin", "-U", "-G", SECMAIL, MTA)
        _run("useradd", "-r", "-M", "-s", "/usr/sbin/nologin", "-U", OUTSIDER)
        for user in (ALICE, BOB, FAR, LOOKUP):
            _run("useradd", "-r", "-M", "-s", "/usr/sbin/nologin", "-U",
                 "-d", f"/nonexistent/{user}", user)
        _run("usermod", "-a", "-G", EXTRA, ALICE)
        _run("useradd", "-r", "-M", "-s", "/usr/sbin/nologin", "-g", FARGROUP, FARGID)
        _run("useradd", "-r", "-M", "-s", "/usr/sbin/nologin", "-U", "-G", SECMAIL, INSIDER)
        yield {u: pwd.getpwnam(u) for u in USERS}
    finally:
        remove_accounts()


@pytest.fixture(scope="session")
def relay_install(accounts, tmp_path_factory):
    base = Path(tempfile.mkdtemp(prefix="mslt-relay-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        inst = RelayInstall(base, accounts)
        for d in (inst.etc, inst.bin, inst.entry.parent, inst.homes):
            d.mkdir(mode=0o755)
        subprocess.run(["make", "-s", "-C", str(HELPER_C), f"OUT={inst.build}",
                        f"POLICY_PATH={inst.policy_path}", f"SPOOL_DIR={base}/spool",
                        "all", "asan", "debug"], check=True)
        shutil.copy(inst.build / "mailslot-relay", inst.relay)
        os.chown(inst.relay, 0, grp.getgrnam(SECMAIL).gr_gid)
        os.chmod(inst.relay, 0o4750)
        shutil.copy(HERE / "fixture_engine.py", inst.entry)
        os.chmod(inst.entry, 0o644)
        inst.make_engine_tree()
        for user in (ALICE, BOB):
            home = inst.homes / user
            home.mkdir(mode=0o700)
            os.chown(home, inst.uid(user), inst.gid(user))
            subprocess.run(["usermod", "-d", str(home), user], check=True)
        inst.accounts = {u: pwd.getpwnam(u) for u in USERS}
        inst.write_policy()
        yield inst
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def relay(relay_install):
    """The installed relay with the default policy restored before each test."""
    relay_install.write_policy()
    return relay_install

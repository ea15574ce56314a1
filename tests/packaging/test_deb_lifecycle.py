"""The .deb on this machine: install, modes, a delivery, upgrade over a local
override, purge.

One scenario, run once (fixture `lifecycle`), as an administrator lives it:
  1. install the first build: postinst creates the group secmail and the user
     mailslot and registers 4750 root:secmail (relay) and 2755 root:mail (dotlock)
     with dpkg-statoverride; a message goes through the installed relay;
  2. the administrator tightens the relay to 4710 with dpkg-statoverride and edits
     /etc/mailslot/mailslot.yaml;
  3. install the second build (a newer version) as an upgrade: dpkg reapplies both
     overrides at unpack, postinst keeps the administrator's, the edit stays, and
     mail still goes through;
  4. purge: no file, no override, no /etc/mailslot left.
The tests below each check one observation. Needs root (dpkg, setpriv); skips when
a mailslot package is already installed here, so that a real one is never touched.
"""
import grp
import os
import pwd
import shutil
import subprocess

import pytest

from tests.packaging.packagetest import (DOTLOCK, PIPE_USER, RELAY, RELAY_GROUP, SETTINGS,
                                         UPGRADE_VERSION, dpkg, mode_of, package_status, run,
                                         statoverrides)
from tests.support import ensure_user, needs_root, remove_user, world_tempdir

pytestmark = needs_root

TARGET = "mslt-pkguser"
LOCAL_RELAY_MODE = 0o4710          # the administrator's override: no read for secmail
LOCAL_EDIT = "hostname: pkgtest.example.org\n"
MSG = (b"From: s@example.org\nTo: mslt-pkguser@example.org\nSubject: package\n"
       b"Message-ID: <pkg@example.org>\n\nDelivered by the installed package.\n")
RUNTIME_DEPENDENCIES = ("python3-yaml", "python3-prctl", "adduser")
PACKAGE_PATHS = ["/usr/lib/mailslot", "/etc/mailslot", "/usr/bin/mailslot",
                 "/usr/share/doc/mailslot", "/usr/share/man/man8/mailslot-relay.8.gz",
                 "/usr/share/man/man1/mailslot-lda.1.gz",
                 "/usr/share/doc/mailslot/deployment.md"]
LMTP_LINKS = ["/etc/systemd/system/sockets.target.wants/mailslot-lmtpd.socket",
              "/etc/systemd/system/multi-user.target.wants/mailslot-lmtpd.service"]


def _exists(kind, name):
    try:
        (grp.getgrnam if kind == "group" else pwd.getpwnam)(name)
        return True
    except KeyError:
        return False


def _target_user(home_base):
    """An ordinary user (uid >= 1000, inside the shipped policy's target range)."""
    home = os.path.join(home_base, TARGET)
    if not _exists("user", TARGET):
        subprocess.run(["useradd", "--user-group", "--home-dir", home, "--shell",
                        "/usr/sbin/nologin", TARGET], check=True)
    return ensure_user(TARGET, home)


def _deliver(target):
    """Pipe MSG through the installed relay as the MTA's pipe user would."""
    proc = subprocess.run(["setpriv", f"--reuid={PIPE_USER}", f"--regid={RELAY_GROUP}",
                           "--init-groups", RELAY, "-d", TARGET, "-f", "s@example.org"],
                          input=MSG, capture_output=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    new = os.path.join(target.pw_dir, "Maildir", "new")
    files = sorted(os.listdir(new)) if os.path.isdir(new) else []
    owners = {(os.stat(os.path.join(new, f)).st_uid) for f in files}
    return {"rc": proc.returncode, "stderr": proc.stderr.decode(errors="replace"),
            "count": len(files), "owners": owners}


def _observe():
    overrides = statoverrides()
    pycache = "/usr/lib/mailslot/python/mailslot/__pycache__"
    return {
        "status": package_status(),
        "version": run("dpkg-query", "-W", "-f=${Version}", "mailslot", check=False),
        "relay": mode_of(RELAY) if os.path.exists(RELAY) else None,
        "dotlock": mode_of(DOTLOCK) if os.path.exists(DOTLOCK) else None,
        "overrides": {p: overrides.get(p) for p in (RELAY, DOTLOCK)},
        "group": _exists("group", RELAY_GROUP),
        "user": _exists("user", PIPE_USER),
        "pyc": len(os.listdir(pycache)) if os.path.isdir(pycache) else 0,
        "cache": os.path.exists("/etc/mailslot/.mailslot.yaml.cache"),
        "settings": open(SETTINGS).read() if os.path.exists(SETTINGS) else None,
        "leftovers": [p for p in PACKAGE_PATHS if os.path.lexists(p)],
        "lmtp_links": [p for p in LMTP_LINKS if os.path.lexists(p)],
    }


@pytest.fixture(scope="module")
def lifecycle(debs):
    first, upgrade = debs
    if package_status() not in (None, "not-installed"):
        pytest.skip("a mailslot package is installed on this machine: the test would "
                    "replace and purge it")
    missing = [d for d in RUNTIME_DEPENDENCIES if package_status(d) != "installed"]
    if missing:
        pytest.skip(f"the .deb's dependencies are not installed: {' '.join(missing)} "
                    "(make deps-build installs them)")
    had_group, had_user = _exists("group", RELAY_GROUP), _exists("user", PIPE_USER)
    # Overrides left by an interrupted earlier run name files that do not exist.
    for path in (RELAY, DOTLOCK):
        if path in statoverrides() and not os.path.exists(path):
            run("dpkg-statoverride", "--remove", path)
    homes = world_tempdir("mslt-pkghome-")
    facts = {}
    try:
        target = _target_user(homes)
        proc = dpkg("-i", first)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        facts["installed"] = _observe()
        facts["first_delivery"] = _deliver(target)

        # The administrator's own choices, made the Debian way.
        run("dpkg-statoverride", "--remove", RELAY)
        run("dpkg-statoverride", "--update", "--add", "root", RELAY_GROUP,
            oct(LOCAL_RELAY_MODE)[2:], RELAY)
        with open(SETTINGS, "a") as f:
            f.write(LOCAL_EDIT)

        proc = dpkg("-i", upgrade)
        facts["upgrade_stderr"] = proc.stderr.decode(errors="replace")
        assert proc.returncode == 0, facts["upgrade_stderr"]
        facts["upgraded"] = _observe()
        facts["second_delivery"] = _deliver(target)

        proc = dpkg("--purge", "mailslot")
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        facts["purged"] = _observe()
        yield facts
    finally:
        if package_status() not in (None, "not-installed"):
            dpkg("--purge", "mailslot")
        for path in (RELAY, DOTLOCK):
            if path in statoverrides():
                run("dpkg-statoverride", "--remove", path, check=False)
        remove_user(TARGET)
        subprocess.run(["groupdel", TARGET], stderr=subprocess.DEVNULL)
        if not had_user:
            remove_user(PIPE_USER)
        if not had_group:
            subprocess.run(["groupdel", RELAY_GROUP], stderr=subprocess.DEVNULL)
        shutil.rmtree(homes, ignore_errors=True)


# -- 1. install ---------------------------------------------------------------------

def test_install_sets_relay_mode(lifecycle):
    assert lifecycle["installed"]["relay"] == (0o4750, "root", RELAY_GROUP)


def test_install_sets_dotlock_mode(lifecycle):
    assert lifecycle["installed"]["dotlock"] == (0o2755, "root", "mail")


def test_install_registers_statoverrides(lifecycle):
    assert lifecycle["installed"]["overrides"] == {
        RELAY: ("root", RELAY_GROUP, 0o4750), DOTLOCK: ("root", "mail", 0o2755)}


def test_install_creates_caller_group_and_pipe_user(lifecycle):
    assert lifecycle["installed"]["group"] and lifecycle["installed"]["user"]
    # pipe(8) gives a command only its user's primary group: it must be secmail.
    assert grp.getgrgid(pwd.getpwnam(PIPE_USER).pw_gid).gr_name == RELAY_GROUP


def test_install_byte_compiles_the_engine_and_refreshes_the_settings_cache(lifecycle):
    assert lifecycle["installed"]["pyc"] > 5
    assert lifecycle["installed"]["cache"]


def test_install_leaves_lmtp_units_disabled(lifecycle):
    assert lifecycle["installed"]["lmtp_links"] == []


def test_installed_relay_delivers_as_the_recipient(lifecycle):
    d = lifecycle["first_delivery"]
    assert d["rc"] == 0, d["stderr"]
    assert d["count"] == 1
    assert d["owners"] == {pwd.getpwnam(TARGET).pw_uid}


# -- 3. upgrade over local changes ---------------------------------------------------

def test_upgrade_installs_the_new_version(lifecycle):
    assert lifecycle["upgraded"]["status"] == "installed"
    assert lifecycle["upgraded"]["version"] == UPGRADE_VERSION


def test_upgrade_keeps_the_administrators_relay_override(lifecycle):
    assert lifecycle["upgraded"]["overrides"][RELAY] == ("root", RELAY_GROUP, LOCAL_RELAY_MODE)
    assert lifecycle["upgraded"]["relay"] == (LOCAL_RELAY_MODE, "root", RELAY_GROUP)


def test_upgrade_keeps_the_packages_dotlock_mode(lifecycle):
    assert lifecycle["upgraded"]["overrides"][DOTLOCK] == ("root", "mail", 0o2755)
    assert lifecycle["upgraded"]["dotlock"] == (0o2755, "root", "mail")


def test_upgrade_keeps_the_edited_conffile(lifecycle):
    assert lifecycle["upgraded"]["settings"].endswith(LOCAL_EDIT)


def test_relay_still_delivers_after_the_upgrade(lifecycle):
    d = lifecycle["second_delivery"]
    assert d["rc"] == 0, d["stderr"]
    assert d["count"] == 2


# -- 4. purge ------------------------------------------------------------------------

def test_purge_removes_every_file(lifecycle):
    assert lifecycle["purged"]["status"] in (None, "not-installed")
    assert lifecycle["purged"]["leftovers"] == []


def test_purge_removes_the_statoverrides(lifecycle):
    assert lifecycle["purged"]["overrides"] == {RELAY: None, DOTLOCK: None}

"""Shared pieces of the packaging tests: building the packages, reading modes.

The packages are built the way `make deb` / `make rpm` build them (the scripts in
packaging/), into a temp dir, once per session. Building needs debhelper,
dh-python, dpkg-dev and rpm (the Makefile's DEB_PKG); tests skip and say so when
they are missing. Installing the .deb changes the machine (dpkg database,
/usr/lib/mailslot, /etc/mailslot, the secmail group), so those tests need root and
undo what they did; CI runs as root.
"""
import os
import shutil
import stat
import subprocess

from tests.support import REPO

PACKAGING = os.path.join(REPO, "packaging")
RELAY = "/usr/lib/mailslot/mailslot-relay"
DOTLOCK = "/usr/lib/mailslot/mailslot-dotlock"
ENTRY = "/usr/lib/mailslot/mailslot-lda"
SETTINGS = "/etc/mailslot/mailslot.yaml"
POLICY = "/etc/mailslot/relay.policy"
RELAY_GROUP = "secmail"
PIPE_USER = "mailslot"
UPGRADE_VERSION = "0.1.0+upgrade1"
BUILD_TIMEOUT = 300          # one package build; about 10 s on 2 cores
DPKG_TIMEOUT = 180


def missing_tools(*tools):
    """The tools of the list that are not on PATH."""
    return [t for t in tools if shutil.which(t) is None]


def build_deb(outdir, version=None):
    """Build the .deb with packaging/build-deb.sh; return the mailslot .deb's path."""
    env = dict(os.environ)
    env.pop("DEB_VERSION", None)
    if version:
        env["DEB_VERSION"] = version
    proc = subprocess.run([os.path.join(PACKAGING, "build-deb.sh"), outdir], env=env,
                          capture_output=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]
    debs = [f for f in os.listdir(outdir)
            if f.startswith("mailslot_") and f.endswith(".deb")]
    assert len(debs) == 1, debs
    return os.path.join(outdir, debs[0])


def build_rpm(outdir):
    proc = subprocess.run([os.path.join(PACKAGING, "build-rpm.sh"), outdir],
                          capture_output=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]
    rpms = [f for f in os.listdir(outdir) if f.endswith(".rpm")]
    assert len(rpms) == 1, rpms
    return os.path.join(outdir, rpms[0])


def run(*cmd, check=True, timeout=DPKG_TIMEOUT):
    """Run cmd without input; return stdout as text (check: exit 0 required)."""
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                "DEBIAN_FRONTEND": "noninteractive",
                                                "LC_ALL": "C"})
    if check:
        assert proc.returncode == 0, (cmd, proc.stdout.decode(errors="replace"),
                                      proc.stderr.decode(errors="replace"))
    return proc.stdout.decode(errors="replace")


def mode_of(path):
    """(mode as 0oNNNN, owner name, group name) of path, not following symlinks."""
    import grp
    import pwd
    st = os.lstat(path)
    return (stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name,
            grp.getgrgid(st.st_gid).gr_name)


def statoverrides():
    """{path: (owner, group, mode)} as dpkg-statoverride --list prints them."""
    found = {}
    for line in run("dpkg-statoverride", "--list", check=False).splitlines():
        owner, group, mode, path = line.split(None, 3)
        found[path] = (owner, group, int(mode, 8))
    return found


def package_status(name="mailslot"):
    """dpkg's status word for name ("installed", "config-files", ...) or None."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", name],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def deb_field(deb, field):
    return run("dpkg-deb", "-f", deb, field).strip()


def deb_files(deb):
    """{path: (type-and-mode string, owner/group)} of the .deb's data."""
    files = {}
    for line in run("dpkg-deb", "-c", deb).splitlines():
        parts = line.split(None, 5)
        path = parts[5].split(" -> ")[0]
        files[path.removeprefix("./").rstrip("/")] = (parts[0], parts[1])
    return files


def rpm_files(rpm):
    """{path: (mode string, owner, group)} from `rpm -qlvp`."""
    files = {}
    for line in run("rpm", "-qlvp", rpm).splitlines():
        parts = line.split(None, 8)
        path = parts[8].split(" -> ")[0]
        files[path] = (parts[0], parts[2], parts[3])
    return files


DPKG_LOCK_WAIT = 90          # seconds to wait for another dpkg/apt run to finish


def dpkg(*args):
    """Run dpkg with args; wait (bounded) while another dpkg or apt holds the lock."""
    import time
    deadline = time.monotonic() + DPKG_LOCK_WAIT
    while True:
        proc = subprocess.run(("dpkg",) + args, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=DPKG_TIMEOUT,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                   "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})
        locked = b"lock" in proc.stderr and b"held by" in proc.stderr
        if not locked or time.monotonic() > deadline:
            return proc
        time.sleep(2)

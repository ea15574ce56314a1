"""Real resource limits: a full filesystem (ENOSPC) and a file size limit (EFBIG).

Each runs a save in a child process: EFBIG under setrlimit(RLIMIT_FSIZE) with
SIGXFSZ ignored (what Postfix's mailbox_size_limit does through ulimit -f); ENOSPC
on a 64 KiB tmpfs mounted in a private mount namespace (unshare -m, needs root).
The child reports the StorageError and what is left in the mailbox, since a tmpfs
vanishes with its namespace: the Maildir's message files, and for every format a
snapshot (path -> size) of the home before and after the failed save, which must
be equal (an mbox truncated back, nothing left in tmp/).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.storage.conftest import FORMATS
from tests.support import REPO

PYSIDE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "pyside")

CHILD = r"""
import json, os, resource, signal, sys
sys.path.insert(0, PYSIDE)
from mailslot.errors import StorageError
from mailslot.storage import open_storage

home, location, limit, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

class Source:
    # size bytes of 4 KiB lines, written in 4 KiB writes
    stored_path = None
    def __init__(self, size):
        self.size = size
    def write_to(self, fd):
        chunk = b"x" * 4095 + b"\n"
        written = 0
        while written < self.size:
            written += os.write(fd, chunk[:self.size - written])
        return written, written + written // 4096

def snapshot():
    return {os.path.relpath(os.path.join(r, f), home): os.path.getsize(os.path.join(r, f))
            for r, ds, fs in os.walk(home) for f in fs}

storage = open_storage(location, user="t", home=home, hostname="h")
storage.save(("INBOX",), Source(100))          # fits: must survive the failure below
before = snapshot()
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    storage.save(("INBOX",), Source(size))
    error = None
except StorageError as exc:
    error = str(exc)
files = sorted(os.path.relpath(os.path.join(r, f), home)
               for r, ds, fs in os.walk(home) for f in fs
               if os.path.basename(r) in ("tmp", "new", "cur"))
print(json.dumps({"error": error, "files": files, "before": before, "after": snapshot()}))
""".replace("PYSIDE", repr(PYSIDE))


def run_child(argv_prefix, home, location, limit, size):
    proc = subprocess.run(argv_prefix + [sys.executable, "-c", CHILD, home, location,
                                         str(limit), str(size)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("fmt_name", sorted(FORMATS))
def test_file_size_limit_is_explained(tmp_path, fmt_name):
    fmt = FORMATS[fmt_name]
    home = tmp_path / "home"
    home.mkdir()
    limit = 256 * 1024
    out = run_child([], str(home), fmt.location(), limit, 4 * limit)
    assert out["error"] is not None
    assert "RLIMIT_FSIZE" in out["error"] and f"{limit} bytes" in out["error"]
    assert "EFBIG" in out["error"] and "mailbox_size_limit" in out["error"]
    assert out["after"] == out["before"]
    if fmt_name == "maildir":
        assert len(out["files"]) == 1, out["files"]
        assert os.path.basename(os.path.dirname(out["files"][0])) == "new"


def _unshare_prefix(mountpoint):
    return ["unshare", "-m", "sh", "-c",
            f'mount -t tmpfs -o size=64k tmpfs "{mountpoint}" && exec "$0" "$@"']


@pytest.mark.parametrize("fmt_name", sorted(FORMATS))
def test_full_filesystem_is_named_and_leaves_nothing(tmp_path, fmt_name):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to mount a small private tmpfs")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    fmt = FORMATS[fmt_name]
    home = tmp_path / "home"
    home.mkdir()
    out = run_child(_unshare_prefix(str(home)), str(home), fmt.location(), 0, 1024 * 1024)
    assert out["error"] is not None
    assert "ENOSPC" in out["error"] and "No space left on device" in out["error"]
    assert out["after"] == out["before"]
    if fmt_name == "maildir":
        assert len(out["files"]) == 1, out["files"]
        assert os.path.basename(os.path.dirname(out["files"][0])) == "new"


EACCES_CHILD = r"""
import os, sys
sys.path.insert(0, PYSIDE)
sys.path.insert(0, REPO)
from mailslot.errors import StorageError
from mailslot.storage import open_storage
from tests.message_source import BytesSource

try:
    open_storage("maildir:~/Maildir", user="t", home=sys.argv[1], hostname="h").save(
        ("INBOX",), BytesSource(b"x\n"))
    print("saved")
except StorageError as exc:
    print(exc)
""".replace("PYSIDE", repr(PYSIDE)).replace("REPO", repr(REPO))


def test_permission_denied_is_named():
    """A Maildir the delivering uid may not write: EACCES named, nothing left."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the save as an unprivileged uid")
    import pathlib
    import tempfile
    base = pathlib.Path(tempfile.mkdtemp(prefix="mailslot-eacces-"))   # pytest's are 0700
    try:
        os.chmod(base, 0o755)
        for sub in ("Maildir", "Maildir/tmp", "Maildir/new", "Maildir/cur"):
            (base / sub).mkdir(mode=0o755)
        proc = subprocess.run(["setpriv", "--reuid=64123", "--regid=64123", "--clear-groups",
                               "/usr/bin/python3", "-I", "-c", EACCES_CHILD, str(base)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "Permission denied (EACCES)" in proc.stdout and "/Maildir/tmp/" in proc.stdout
        assert sorted(os.listdir(base / "Maildir" / "tmp")) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)

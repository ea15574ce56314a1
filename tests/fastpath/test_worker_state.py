"""What the worker takes over from the client besides the descriptors: the working
directory (a relative -p or -c is the client's), the umask (the modes of what the
delivery creates) and the limits (ulimit -f, in the pipe suite). Each outcome is
compared with the ordinary engine's for the same call."""

import os
import shutil
import stat

import pytest

from tests.fastpath.helpers import MSG, Box
from tests.support import needs_root

pytestmark = needs_root


@pytest.fixture
def box(mail_users, front, start_server):
    b = Box(mail_users[0], front)
    start_server(b.user)
    yield b
    b.close()


def modes(box):
    """The modes of what a delivery into ~/deep/er/Maildir made (the missing
    parents of the mail root take the umask's mode, storage/dirs.py)."""
    deep = os.path.join(box.user.pw_dir, "deep")
    out = {"deep": stat.S_IMODE(os.lstat(deep).st_mode)}
    for top, dirs, files in os.walk(deep):
        for name in dirs + files:
            if name.startswith(("dovecot", ".temp")) or top.endswith(("new", "cur", "tmp")):
                continue
            path = os.path.join(top, name)
            out[os.path.relpath(path, box.user.pw_dir)] = stat.S_IMODE(os.lstat(path).st_mode)
    return out


@pytest.mark.parametrize("mask", ["022", "077", "007"])
def test_umask_gives_the_same_modes_on_both_paths(box, front, mask):
    seen = {}
    for path, binary in (("ordinary", front.engine), ("fast", front.front)):
        for entry in os.listdir(box.user.pw_dir):
            if entry == "deep":
                shutil.rmtree(os.path.join(box.user.pw_dir, entry))
        proc = box.deliver("-m", "Lists", "-o", "mail_location=maildir:~/deep/er/Maildir",
                           binary=binary,
                           prefix=["sh", "-c", f'umask {mask}; exec "$@"', "sh"])
        assert proc.returncode == 0, proc.stderr
        seen[path] = modes(box)
    assert seen["fast"] == seen["ordinary"] and seen["fast"], seen
    assert seen["fast"]["deep"] == 0o777 & ~int(mask, 8), seen
    assert box.log_counts()[0] == 1         # the second one was handed off


def test_relative_paths_are_the_clients(box):
    # -p incoming.eml, run from the user's home: the worker resolves it there.
    src = os.path.join(box.user.pw_dir, "incoming.eml")
    with open(src, "wb") as f:
        f.write(MSG)
    os.chown(src, box.user.pw_uid, box.user.pw_gid)
    proc = box.deliver("-p", "incoming.eml", input=b"", cwd=box.user.pw_dir)
    assert proc.returncode == 0, proc.stderr
    assert box.read_new() == [MSG] and box.log_counts() == (1, 0)
    (name,) = box.new()
    assert os.stat(os.path.join(box.maildir, "new", name)).st_ino == os.stat(src).st_ino

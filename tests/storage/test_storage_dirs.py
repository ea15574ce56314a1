"""The shared directory opener (mailslot.storage.dirs), case by case.

The conformance suite covers what a save does through it; these are the cases a
save cannot show on its own: every kind of entry where a directory belongs, with
and without a format's own wording, what a new root and a new child look like,
and that the module stays off the import budget of the plain delivery path.
"""

import os
import re
import stat
import subprocess
import sys

import pytest

from mailslot.errors import MailboxNotFoundError, StorageError
from mailslot.storage.dirs import NEW_ROOT_MODE, DirOpener, Fds, RefusedError

from tests.support import REPO


class FormatWordedError(StorageError):
    """What the hooks below raise, so a test can tell their wording was used."""


def root_hook(path):
    return FormatWordedError(f"root {path} is a file")


def child_hook(path, create):
    return FormatWordedError(f"{path} is a file (create={create})")


PLAIN = {}                                              # Maildir: no hooks
WORDED = {"root_file_error": root_hook, "child_file_error": child_hook}   # as mbox


def _dir(path, outside):
    os.mkdir(path)


def _symlink_to_dir(path, outside):
    os.symlink(outside, path)


def _symlink_to_file(path, outside):
    os.symlink(outside / "file", path)


def _dangling_symlink(path, outside):
    os.symlink(outside / "nowhere", path)


def _file(path, outside):
    with open(path, "wb") as f:
        f.write(b"mail\n")


def _fifo(path, outside):
    os.mkfifo(path)


# kind -> (how to plant it, outcome with no hooks, outcome with the format's hooks)
# where an outcome is "open" or the exception expected.
CHILD_KINDS = {
    "directory": (_dir, "open", "open"),
    "symlink to a directory": (_symlink_to_dir, RefusedError, RefusedError),
    "symlink to a file": (_symlink_to_file, RefusedError, RefusedError),
    "dangling symlink": (_dangling_symlink, RefusedError, RefusedError),
    "regular file": (_file, RefusedError, FormatWordedError),
    "fifo": (_fifo, RefusedError, RefusedError),
}


def _snapshot(path):
    return sorted((os.path.relpath(os.path.join(r, n), path))
                  for r, ds, fs in os.walk(path) for n in ds + fs)


@pytest.fixture
def outside(tmp_path):
    """A directory a symlink could lead to: nothing may appear in it."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "file").write_bytes(b"precious\n")
    return path


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "root"
    path.mkdir(mode=0o700)
    return path


@pytest.mark.parametrize("create", [False, True], ids=["open", "create"])
@pytest.mark.parametrize("hooks", [PLAIN, WORDED], ids=["plain", "worded"])
@pytest.mark.parametrize("kind", list(CHILD_KINDS))
def test_child_kinds(root, outside, kind, hooks, create):
    plant, plain, worded = CHILD_KINDS[kind]
    expected = worded if hooks else plain
    plant(root / "box", outside)
    before = os.lstat(root / "box")
    outside_before = _snapshot(outside)
    opener = DirOpener(umask=0o077, fsync=True, **hooks)
    with Fds() as fds:
        base = fds.add(opener.open_root(str(root), create=False))
        path = f"{root}/box"
        if expected == "open":
            fd = fds.add(opener.open_child(base, "box", path, create=create,
                                           perm=opener.perm_of(base)))
            assert os.path.samestat(os.fstat(fd), before)
        else:
            with pytest.raises(expected) as info:
                opener.open_child(base, "box", path, create=create,
                                  perm=opener.perm_of(base))
            assert str(info.value).startswith(path), info.value
            if expected is FormatWordedError:
                assert f"create={create}" in str(info.value)
            else:
                assert "not a directory (or a symlink), refused" in str(info.value)
    after = os.lstat(root / "box")
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert _snapshot(outside) == outside_before


@pytest.mark.parametrize("hooks", [PLAIN, WORDED], ids=["plain", "worded"])
def test_missing_child_without_create_names_its_whole_path(root, hooks):
    opener = DirOpener(umask=0o077, fsync=True, **hooks)
    with Fds() as fds:
        base = fds.add(opener.open_root(str(root), create=False))
        with pytest.raises(FileNotFoundError) as info:
            opener.open_child(base, "box", f"{root}/box", create=False,
                              perm=opener.perm_of(base))
    assert info.value.filename == f"{root}/box"
    assert os.listdir(root) == []


# (root's mode, root's group, umask) -> (new child's mode, new child's group)
# where "ours" is the process's egid. Dovecot's rule: dir mode (root & 0777)|0700;
# the root's group unless it is ours, setgid, or no different from others.
NEW_CHILD_CASES = {
    "private root, strict umask": ((0o700, "ours", 0o077), (0o700, "ours")),
    "group root, strict umask": ((0o750, 4242, 0o077), (0o750, 4242)),
    "group root, open umask": ((0o770, 4242, 0o000), (0o770, 4242)),
    "group same as others": ((0o755, 4242, 0o022), (0o755, "ours")),
    "setgid root": ((0o2770, 4242, 0o077), (0o2770, 4242)),
    "owner-only bits widened": ((0o050, "ours", 0o022), (0o750, "ours")),
}


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory another group needs root")
@pytest.mark.parametrize("case", list(NEW_CHILD_CASES))
def test_new_child_gets_the_roots_mode_and_group(root, case):
    (mode, group, umask), (want_mode, want_group) = NEW_CHILD_CASES[case]
    ours = os.getegid()
    os.chown(root, -1, ours if group == "ours" else group)
    os.chmod(root, mode)
    opener = DirOpener(umask=umask, fsync=True)
    old = os.umask(umask)
    try:
        with Fds() as fds:
            fd, path, perm = opener.walk(str(root), ["a", "b"], fds, create=True,
                                         create_base=False)
            assert path == f"{root}/a/b"
            assert perm.dir_mode == (mode & 0o777) | 0o700
            assert os.path.samestat(os.fstat(fd), os.stat(root / "a" / "b"))
    finally:
        os.umask(old)
    for made in (root / "a", root / "a" / "b"):
        st = os.stat(made)
        assert stat.S_IMODE(st.st_mode) == want_mode, (made, oct(st.st_mode))
        assert st.st_gid == (ours if want_group == "ours" else want_group), made


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_new_root_is_private_whatever_the_umask(tmp_path, umask):
    opener = DirOpener(umask=umask, fsync=True)
    target = tmp_path / "new" / "Maildir"
    old = os.umask(umask)
    try:
        fd = opener.open_root(str(target), create=True)
        os.close(fd)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(target).st_mode) == NEW_ROOT_MODE


def test_missing_root_without_create(tmp_path):
    opener = DirOpener(umask=0o077, fsync=True)
    with pytest.raises(FileNotFoundError):
        opener.open_root(str(tmp_path / "nosuch"), create=False)
    with Fds() as fds, pytest.raises(MailboxNotFoundError, match="mail root does not exist"):
        opener.walk(str(tmp_path / "nosuch"), ["a"], fds, create=True, create_base=False)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("create", [False, True], ids=["open", "create"])
@pytest.mark.parametrize("hooks", [PLAIN, WORDED], ids=["plain", "worded"])
def test_root_that_is_a_file(tmp_path, hooks, create):
    target = tmp_path / "mail"
    target.write_bytes(b"mail\n")
    opener = DirOpener(umask=0o077, fsync=True, **hooks)
    with pytest.raises(FormatWordedError if hooks else NotADirectoryError):
        opener.open_root(str(target), create=create)
    with Fds() as fds, pytest.raises(StorageError, match=re.escape(str(target))):
        opener.walk(str(target), [], fds, create=create, create_base=create)
    assert target.read_bytes() == b"mail\n"


def test_root_may_be_a_symlink_the_administrator_chose(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    opener = DirOpener(umask=0o077, fsync=True)
    with Fds() as fds:
        fd, path, _perm = opener.walk(str(tmp_path / "link"), ["box"], fds, create=True,
                                      create_base=False)
        assert path == f"{tmp_path}/link/box"
    assert (real / "box").is_dir()


PROBE = """
import sys
sys.path.insert(0, {pyside!r})
import errno, os, stat                      # the engine has them loaded anyway
import mailslot.errors, mailslot.storage
before = set(sys.modules)
import mailslot.storage.dirs
print(" ".join(sorted(set(sys.modules) - before)))
"""


def test_dirs_imports_nothing_but_itself():
    # The plain delivery path pays for every module (docs/architecture.md, "Start-up
    # is the speed").
    code = PROBE.format(pyside=os.path.join(REPO, "pyside"))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         check=True, text=True).stdout
    assert out.split() == ["mailslot.storage.dirs"]


MBOX_PROBE = """
import os, sys
sys.path.insert(0, {pyside!r})
from mailslot.storage import open_storage
class Src:
    stored_path = None
    envelope_sender = "s@example.org"
    def write_to(self, fd):
        os.write(fd, b"Subject: x\\n\\nbody\\n")
        return 17, 20
open_storage("mbox:~/mail", user="t", home=sys.argv[1], hostname="h").save(("INBOX",), Src())
print(" ".join(sorted(m for m in sys.modules if m.startswith("mailslot.storage"))))
"""


def test_mbox_save_does_not_load_the_maildir_module(tmp_path):
    code = MBOX_PROBE.format(pyside=os.path.join(REPO, "pyside"))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(tmp_path)],
                         capture_output=True, check=True, text=True).stdout
    modules = set(out.split())
    assert "mailslot.storage.dirs" in modules               # the probe saw the save
    assert "mailslot.storage.maildir" not in modules

"""The passwd-file copy mailslot-lmtpd keeps (userdb/passwd_cache.py): one stat per
lookup, and every change to the file seen at the next lookup -- never a TTL."""

import importlib
import os
import time

import pytest

from mailslot import errors, userdb
from mailslot.userdb import passwd_cache
from mailslot.userdb.passwd_cache import PasswdFileCache

# The module (mailslot.userdb.lookup is also the name of its lookup function).
lookup_module = importlib.import_module("mailslot.userdb.lookup")
OLD = time.time() - 3600        # an mtime an hour ago
# The cache's clock a minute ahead: a file written by a test (its ctime is now,
# whatever its mtime) is old enough to be kept.
LATER = 60


def write(path, text, mtime=OLD):
    with open(path, "w") as f:
        f.write(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@pytest.fixture
def cache(monkeypatch):
    made = PasswdFileCache(clock=lambda: time.time() + LATER)
    monkeypatch.setattr(lookup_module, "PASSWD_FILE_CACHE", made)
    return made


def find(path, name):
    user = userdb.lookup(name, [{"driver": "passwd-file", "args": path}])
    return None if user is None else (user.uid, user.home)


BOB = "bob::3001:3001::/home/bob::\n"
ANN = "ann::3002:3002::/home/ann::\n"


def test_an_unchanged_file_is_read_once(tmp_path, cache):
    path = str(tmp_path / "users")
    write(path, BOB + ANN)
    assert [find(path, "bob"), find(path, "ann"), find(path, "nobody")] == \
        [(3001, "/home/bob"), (3002, "/home/ann"), None]
    assert cache.loads == 1


def test_a_user_removed_in_place_is_unknown_at_the_next_lookup(tmp_path, cache):
    """Same size and the same mtime (a whole-second filesystem, an editor that keeps
    the mtime): the ctime still moves, and the file is read again."""
    path = str(tmp_path / "users")
    write(path, BOB + ANN)
    assert find(path, "bob") == (3001, "/home/bob")
    write(path, BOB.replace("bob", "xyz") + ANN)        # same size
    assert find(path, "bob") is None
    assert find(path, "xyz") == (3001, "/home/xyz")
    assert cache.loads == 2


def test_a_changed_user_is_seen_at_the_next_lookup(tmp_path, cache):
    path = str(tmp_path / "users")
    write(path, BOB)
    assert find(path, "bob") == (3001, "/home/bob")
    write(path, BOB.replace("/home/bob", "/srv/bob2"), mtime=OLD + 1)
    assert find(path, "bob") == (3001, "/srv/bob2")


def test_a_file_replaced_by_rename_is_seen(tmp_path, cache):
    path = str(tmp_path / "users")
    write(path, BOB)
    assert find(path, "bob") == (3001, "/home/bob")
    new = str(tmp_path / "users.new")
    write(new, BOB.replace("3001", "3009"))     # same size, same mtime, another inode
    os.rename(new, path)
    assert find(path, "bob") == (3009, "/home/bob")


def test_a_removed_file_is_an_error_again(tmp_path, cache):
    path = str(tmp_path / "users")
    write(path, BOB)
    assert find(path, "bob") == (3001, "/home/bob")
    os.unlink(path)
    with pytest.raises(errors.UserdbError, match="does not exist"):
        find(path, "bob")


def test_a_file_changed_just_now_is_not_kept(tmp_path, cache):
    """Within RACY_SECONDS of its last change a file could change again without
    its stat changing (whole-second timestamps): read at every lookup until then."""
    path = str(tmp_path / "users")
    write(path, BOB, mtime=None)
    cache.clock = time.time
    find(path, "bob")
    find(path, "bob")
    assert cache.loads == 2
    cache.clock = lambda: time.time() + passwd_cache.RACY_SECONDS
    find(path, "bob")
    find(path, "bob")
    assert cache.loads == 3


def test_duplicates_and_bad_lines_warn_as_without_the_copy(tmp_path, cache):
    path = str(tmp_path / "users")
    write(path, "bob::0:3001::/home/zero::\n" + BOB + "bob::3003:3003::/home/b3::\n")
    for _ in range(2):
        warnings = []
        user = userdb.lookup("bob", [{"driver": "passwd-file", "args": path}],
                             warnings=warnings)
        assert (user.uid, user.home) == (3001, "/home/bob")
        assert len(warnings) == 2
        assert "line 1" in warnings[0] and "invalid UID" in warnings[0]
        assert "line 3" in warnings[1] and "more than once" in warnings[1]
    assert cache.loads == 1


def test_memory_is_bounded(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(passwd_cache, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(passwd_cache, "MAX_TOTAL_BYTES", 2000)
    big = str(tmp_path / "big")
    write(big, BOB + "".join(f"u{i}::3100:3100::/h/u{i}::\n" for i in range(100)))
    assert find(big, "bob") == (3001, "/home/bob")      # streamed, not kept
    assert find(big, "u99") == (3100, "/h/u99")
    assert cache.loads == 0
    paths = []
    for i in range(5):                          # 5 x 500 bytes > MAX_TOTAL_BYTES
        paths.append(str(tmp_path / f"d{i}"))
        write(paths[-1], BOB + ANN * 17)
        assert find(paths[-1], "bob") == (3001, "/home/bob")
    kept = cache._files
    assert 0 < len(kept) < 5
    assert sum(entry[1] for entry in kept.values()) <= 2000

"""maildirsize: read, trusted or recalculated exactly when Dovecot 2.3 does.

The parity cases write a maildirsize beside two real messages (3000 bytes), let
`doveadm quota get` read it, then write it again and let `mailslot quota get` read
it: both must report the same usage and leave the same file (recalculated or
not). The unit tests cover the rest: the append's whole line, the unlink on a
write error, the lock file, the 15-minute staleness with an injected clock.
"""

import os
import time

import pytest

from mailslot.storage.quota_maildirsize import (
    LOCK_NAME, RECALC_SIZE, MaildirSize, parse_delta, parse_file, sum_maildir)
from tests.quota.qenv import message

LIMIT = "100000S"
# name: maildirsize text (mtime offset in seconds, None: now)
FILE_CASES = {
    "only-limits-line": (f"{LIMIT}\n", None),
    "trusted-wrong-totals": (f"{LIMIT}\n10 1\n", None),
    "empty-line": (f"{LIMIT}\n\n", None),
    "empty-line-between": (f"{LIMIT}\n5 1\n\n6 1\n", None),
    "leading-space": (f"{LIMIT}\n 5 1\n", None),
    "trailing-text": (f"{LIMIT}\n5 1 extra\n", None),
    "one-number": (f"{LIMIT}\n5\n", None),
    "garbage-limits": ("abc\n5 1\n", None),
    "zero-count-limit": (f"{LIMIT},0C\n5 1\n", None),
    "count-instead-of-bytes": ("100000C\n5 1\n", None),
    "limits-reordered": (f"0C,{LIMIT}\n5 1\n", None),
    "signed": (f"{LIMIT}\n+5 +1\n", None),
    "bad-number": (f"{LIMIT}\n5x 1\n", None),
    "negative-delta-positive-sum": (f"{LIMIT}\n-5 0\n10 1\n", None),
    "negative-sum": (f"{LIMIT}\n10 1\n-100 -1\n", None),
    "space-after-limits": (f"{LIMIT} \n5 1\n", None),
    "lowercase-unit": ("100000s\n5 1\n", None),
    "changed-limits": ("5000S,7C\n1500 1\n", None),
    "empty": ("", None),
    "no-newline": (LIMIT, None),
    "5119-bytes": (f"{LIMIT}\n" + "0 0\n" * 1276 + "0 0000\n", None),
    "5120-bytes": (f"{LIMIT}\n" + "0 0\n" * 1277 + "1 0\n", None),
    "over-fresh-single-line": (f"{LIMIT}\n200000 1\n", None),
    "over-with-deltas": (f"{LIMIT}\n0 0\n200000 1\n", None),
    "over-14-minutes-old": (f"{LIMIT}\n200000 1\n", -14 * 60),
    "over-16-minutes-old": (f"{LIMIT}\n200000 1\n", -16 * 60),
}


@pytest.fixture(scope="module")
def filled(request):
    """One env with two messages of 1500 bytes, delivered by Dovecot."""
    from tests.dovecot_env import dovecot_missing
    from tests.quota.qenv import QuotaEnv
    if dovecot_missing():
        pytest.skip(dovecot_missing())
    q = QuotaEnv.create(rules={"quota_rule": "*:bytes=100000"})
    for _ in range(2):
        assert q.dovecot_lda(message(1500)).returncode == 0
    yield q
    q.cleanup()


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_read_or_recalculate_like_dovecot(filled, case):
    text, age = FILE_CASES[case]
    if case[0].isdigit():
        assert len(text) == int(case.split("-")[0])
    mtime = None if age is None else time.time() + age
    filled.write_maildirsize(text, mtime)
    theirs = filled.doveadm_quota()
    their_file = filled.maildirsize()
    filled.write_maildirsize(text, mtime)
    ours = filled.mailslot_quota()
    assert ours == theirs
    assert filled.maildirsize() == their_file


def test_honours_a_maildirsize_dovecot_wrote(quota_env):
    q = quota_env(rules={"quota_rule": "*:storage=10k"})
    for _ in range(2):
        assert q.dovecot_lda(message(3000)).returncode == 0
    dovecots = q.maildirsize()
    assert dovecots == "10240S\n0 0\n3000 1\n3000 1\n"
    inode = os.stat(os.path.join(q.maildir, "maildirsize")).st_ino
    assert q.mailslot_lda(message(3000), "-f", "s@example.org").returncode == 0
    # Read and appended to, not rebuilt: the same file with one more line.
    assert q.maildirsize() == dovecots + "3000 1\n"
    assert os.stat(os.path.join(q.maildir, "maildirsize")).st_ino == inode
    # Dovecot's file is the truth while it is fresh: over quota per the file
    # (one line, just written) is over quota, whatever the Maildir holds.
    q.write_maildirsize("10240S\n20000 1\n")
    proc = q.mailslot_lda(message(500), "-f", "s@example.org", "-e")
    assert proc.returncode == 77, proc.stderr
    assert q.dovecot_lda(message(500), "-f", "s@example.org", "-e").returncode == 77


def test_limits_from_the_file_without_a_default_rule(quota_env):
    # quota set, no quota_rule: the file's limits, as Dovecot (Courier's maildirmake -q).
    q = quota_env(rules={"quota": "maildir:User quota"})
    assert q.mailslot_lda(message(1500)).returncode == 0
    assert q.maildirsize() == "0S\n0 0\n1500 1\n"
    q.write_maildirsize("5000S,7C\n3000 2\n")
    assert q.mailslot_quota() == [("User quota", "STORAGE", "3", "5", "60"),
                                  ("User quota", "MESSAGE", "2", "7", "28")]
    assert q.mailslot_quota() == q.doveadm_quota()
    assert q.mailslot_lda(message(1500)).returncode == 0          # 4500: fits
    assert q.mailslot_lda(message(1500), "-e").returncode == 77   # 6000 > 5000 + 500


@pytest.mark.parametrize("line,expected", [
    ("5 1", (5, 1)), (" 5 1", (5, 1)), ("5 1 x", (5, 1)), ("+5 -1", (5, -1)),
    ("5-1", (5, -1)), ("5", None), ("x 1", None), ("5x 1", None), ("", None),
    ("99999999999999999999 1", None), ("5 99999999999", None),
])
def test_delta_lines(line, expected):
    assert parse_delta(line) == expected


def test_a_cut_last_line_is_recalculated():
    # Dovecot would append "1500 1" after "77" and read 771500 bytes later.
    assert parse_file(b"100000S\n3000 2\n77") is None
    assert parse_file(b"100000S\n3000 2\n") == ((100000, 0), 3000, 2, 1)


def _maildir(tmp_path, sizes):
    for sub in ("new", "cur", "tmp"):
        (tmp_path / sub).mkdir()
    for i, size in enumerate(sizes):
        (tmp_path / "new" / f"{i}.M1P1.h,S={size},W={size + 1}").write_bytes(b"x" * size)
    return tmp_path


def test_append_is_one_whole_line_and_a_failed_write_unlinks(tmp_path):
    root = _maildir(tmp_path, [100, 200])
    ms = MaildirSize(str(root), count=lambda: sum_maildir(str(root)))
    with ms.locked():
        usage = ms.refresh((1000, 0))
        assert (usage.bytes, usage.count, usage.recalculated) == (300, 2, True)
        assert ms.append(50, 1) is None
    assert (root / "maildirsize").read_text() == "1000S\n300 2\n50 1\n"
    with ms.locked():
        ms.refresh((1000, 0))
        # A write that fails (a full disk): the file would lie, so it goes.
        os.dup2(os.open("/dev/full", os.O_WRONLY), ms._fd)
        warning = ms.append(50, 1)
    assert warning and "recalculated" in warning
    assert not (root / "maildirsize").exists()
    with ms.locked():
        assert ms.refresh((1000, 0)).recalculated


def test_sum_takes_sizes_from_names_else_stat(tmp_path):
    root = _maildir(tmp_path, [100])
    (root / "cur" / "2.M1P1.h,S=77:2,S").write_bytes(b"x" * 5)        # name wins
    (root / "cur" / "3.M1P1.h:2,S").write_bytes(b"x" * 9)             # stat
    (root / "cur" / "4.M1P1.h,S=12x:2,").write_bytes(b"x" * 3)        # bad: stat
    (root / "cur" / ".hidden").write_bytes(b"x" * 1000)                # skipped
    assert sum_maildir(str(root)) == (100 + 77 + 9 + 3, 4)


def test_a_fresh_lock_file_means_someone_else_writes(tmp_path, monkeypatch):
    from mailslot.storage import quota_maildirsize
    monkeypatch.setattr(quota_maildirsize, "LOCK_TIMEOUT", 0.2)   # the wait for them
    root = _maildir(tmp_path, [100])
    now = [time.time()]
    ms = MaildirSize(str(root), count=lambda: sum_maildir(str(root)),
                     clock=lambda: now[0])
    (root / LOCK_NAME).write_text("")
    with ms.locked():
        usage = ms.refresh((1000, 0))
    assert usage.bytes == 100 and not (root / "maildirsize").exists()
    now[0] += 31        # Dovecot's stale timeout for this dotlock: 30 s
    with ms.locked():
        ms.refresh((1000, 0))
    assert (root / "maildirsize").read_text() == "1000S\n100 1\n"
    assert not (root / LOCK_NAME).exists()


def test_staleness_uses_the_injected_clock(tmp_path):
    root = _maildir(tmp_path, [100])
    (root / "maildirsize").write_text("1000S\n5000 1\n")
    mtime = os.stat(root / "maildirsize").st_mtime
    for offset, recalculated in ((14 * 60, False), (16 * 60, True)):
        ms = MaildirSize(str(root), count=lambda: sum_maildir(str(root)),
                         clock=lambda: mtime + offset)
        with ms.locked():
            usage = ms.refresh((1000, 0))
        assert usage.recalculated is recalculated
        assert usage.bytes == (100 if recalculated else 5000)


def test_a_large_file_is_recalculated(tmp_path):
    root = _maildir(tmp_path, [100])
    (root / "maildirsize").write_text("1000S\n" + "1 0\n" * (RECALC_SIZE // 4))
    ms = MaildirSize(str(root), count=lambda: sum_maildir(str(root)))
    with ms.locked():
        assert ms.refresh((1000, 0)).bytes == 100
    assert (root / "maildirsize").read_text() == "1000S\n100 1\n"


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_something_else_under_the_name(tmp_path, kind):
    # A FIFO does not hold the delivery, a symlink is not followed (its target
    # stays as it was), a directory only means the count is not written.
    maildir = tmp_path / "m"
    maildir.mkdir()
    root = _maildir(maildir, [100])
    target = tmp_path / "target"
    target.write_text("keep me\n")
    path = root / "maildirsize"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        os.symlink(target, path)
    else:
        path.mkdir()
    ms = MaildirSize(str(root), count=lambda: sum_maildir(str(root)))
    with ms.locked():
        usage = ms.refresh((1000, 0))
        assert (usage.bytes, usage.count) == (100, 1)
        ms.append(10, 1)
    assert target.read_text() == "keep me\n"
    if kind != "directory":
        assert path.read_text() == "1000S\n100 1\n10 1\n" and not path.is_symlink()

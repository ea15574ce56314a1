"""Maildir specifics: what Dovecot expects to find on disk, byte for byte."""

import os
import re
import time

import pytest

from mailslot.errors import MailboxNameError, StorageError
from mailslot.storage import index

from tests.storage.sources import TEST_HOST as HOST, BytesSource, maildir_storage, message
from tests.support import FIXED_TIME, fixed_clock

NAME_RE = re.compile(r"^(\d+)\.M(\d+)P(\d+)\.testhost,S=(\d+),W=(\d+)$")
HEADER_RE = re.compile(r"^3 V(\d+) N(\d+) G([0-9a-f]{32})\n$")


make = maildir_storage


@pytest.fixture
def home(tmp_path):
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def lines(path):
    with open(path) as f:
        return f.readlines()


# --- file names and modes -------------------------------------------------------------

@pytest.fixture
def fresh_stamps(monkeypatch):
    """The process-wide guards that keep names and UIDVALIDITYs increasing, reset:
    a fixed clock earlier than what a previous test saw must still be used."""
    from mailslot.storage import maildir, uidvalidity
    monkeypatch.setattr(maildir, "_last_stamp", (0, 0))
    monkeypatch.setattr(uidvalidity, "_fallback_uid_validity", 0)


def test_file_name_is_dovecots(home, fresh_stamps):
    st = make(home, clock=fixed_clock)
    data = message(1)
    r = st.save(("INBOX",), BytesSource(data))
    assert os.path.dirname(r.path) == str(home / "Maildir" / "new")
    m = NAME_RE.match(os.path.basename(r.path))
    assert m, r.path
    assert int(m.group(3)) == os.getpid()
    # <sec>.M<usec>: the injected clock's seconds and microseconds.
    assert (int(m.group(1)), int(m.group(2))) == (int(FIXED_TIME), 250000)
    assert (int(m.group(4)), int(m.group(5))) == (len(data), len(data) + data.count(b"\n"))
    # The same instant again: the next microsecond, as Dovecot keeps names unique.
    again = NAME_RE.match(os.path.basename(st.save(("INBOX",), BytesSource(data)).path))
    assert (int(again.group(1)), int(again.group(2))) == (int(FIXED_TIME), 250001)


def test_system_clock_is_the_default(home):
    before = time.time_ns() // 1000
    r = make(home).save(("INBOX",), BytesSource(message(1)))
    after = time.time_ns() // 1000
    m = NAME_RE.match(os.path.basename(r.path))
    assert before <= int(m.group(1)) * 1_000_000 + int(m.group(2)) <= after + 1000


def test_names_are_unique_and_ordered_within_a_process(home):
    st = make(home)
    names = [os.path.basename(st.save(("INBOX",), BytesSource(message(i))).path)
             for i in range(50)]
    stamps = [tuple(int(x) for x in NAME_RE.match(n).group(1, 2)) for n in names]
    assert stamps == sorted(set(stamps))


@pytest.mark.parametrize("hostname,expected", [
    ("mx1.example.org", "mx1.example.org"),
    ("a/b", "a\\057b"),
    ("c:d", "c\\072d"),
])
def test_hostname_is_escaped_as_the_maildir_spec_says(home, hostname, expected):
    r = make(home, hostname=hostname).save(("INBOX",), BytesSource(message()))
    assert os.path.basename(r.path).split(",")[0].split(".", 2)[2] == expected


@pytest.mark.parametrize("root_mode,file_mode", [(0o700, 0o600), (0o750, 0o640),
                                                  (0o755, 0o644), (0o770, 0o660)])
@pytest.mark.parametrize("umask", [0o077, 0o000, 0o022])
def test_modes_follow_the_mailbox_directory_not_the_umask(home, root_mode, file_mode, umask):
    (home / "Maildir").mkdir(mode=0o700)
    os.chmod(home / "Maildir", root_mode)
    old = os.umask(umask)
    try:
        st = make(home)
        r = st.save(("INBOX",), BytesSource(message()))
        st.create_mailbox(("box",))
    finally:
        os.umask(old)
    assert os.stat(r.path).st_mode & 0o777 == file_mode
    uidlist = home / "Maildir" / "dovecot-uidlist"
    assert os.stat(uidlist).st_mode & 0o777 == file_mode
    assert os.stat(home / "Maildir" / ".box").st_mode & 0o777 == root_mode
    assert os.stat(home / "Maildir" / "new").st_mode & 0o777 == root_mode


def test_setgid_shared_root_keeps_its_group_bit(home):
    root = home / "Maildir"
    root.mkdir()
    os.chmod(root, 0o2770)
    old = os.umask(0o077)
    try:
        st = make(home)
        st.create_mailbox(("shared",))
        r = st.save(("shared",), BytesSource(message()))
    finally:
        os.umask(old)
    assert os.stat(root / ".shared").st_mode & 0o7777 == 0o2770
    assert os.stat(r.path).st_mode & 0o777 == 0o660


def test_new_mail_root_is_private(home):
    r = make(home).save(("INBOX",), BytesSource(message()))
    assert os.stat(home / "Maildir").st_mode & 0o777 == 0o700
    assert os.stat(r.path).st_mode & 0o777 == 0o600


def test_copy_is_a_hard_link(home):
    st = make(home)
    st.create_mailbox(("copy",))
    first = st.save(("INBOX",), BytesSource(message()))
    second = st.save(("copy",), BytesSource(b"never written", stored_path=first.path),
                     flags=("\\Seen",))
    assert os.stat(first.path).st_ino == os.stat(second.path).st_ino
    assert second.path.endswith(":2,S") and "/.copy/cur/" in second.path


def test_input_file_with_known_sizes_is_hard_linked(home, tmp_path):
    # dovecot-lda -p: the message file itself is linked into the Maildir.
    data = message(3)
    src = tmp_path / "incoming"
    src.write_bytes(data)
    source = BytesSource(b"never written", stored_path=str(src))
    source.sizes = (len(data), len(data) + data.count(b"\n"))
    r = make(home).save(("INBOX",), source)
    assert os.stat(r.path).st_ino == src.stat().st_ino
    assert (r.size, r.vsize) == source.sizes


def test_input_file_with_wrong_size_is_copied_not_linked(home, tmp_path):
    src = tmp_path / "incoming"
    src.write_bytes(b"changed since\n")
    data = message(3)
    source = BytesSource(data, stored_path=str(src))
    source.sizes = (len(data), len(data) + data.count(b"\n"))
    r = make(home).save(("INBOX",), source)
    assert os.stat(r.path).st_ino != src.stat().st_ino
    assert open(r.path, "rb").read() == data


# --- layouts ----------------------------------------------------------------------------

def test_maildirplusplus_layout(home):
    st = make(home)
    assert st.default_separator == "."
    st.create_mailbox(("box", "sub"))
    st.create_mailbox(("Tést", "ü&x"))
    root = home / "Maildir"
    for folder in (".box.sub", ".T&AOk-st.&APw-&-x"):
        assert sorted(os.listdir(root / folder)) == ["cur", "dovecot-uidlist", "maildirfolder",
                                                    "new", "tmp"]
        assert (root / folder / "maildirfolder").stat().st_size == 0
    assert not (root / ".box").exists()          # Maildir++ has no parent directories
    assert not (root / "maildirfolder").exists()
    assert st.save(("box", "sub"), BytesSource(message())).mailbox == "box.sub"


def test_inbox_root_is_never_marked_as_a_folder(home):
    # Dovecot's LDA leaves maildirfolder in an INBOX it creates; Maildir++ quota
    # readers would then look for maildirsize in the parent. mailslot does not.
    st = make(home)
    st.save(("INBOX",), BytesSource(message()))
    st.create_mailbox(("INBOX",))
    assert not (home / "Maildir" / "maildirfolder").exists()
    inbox = make(home, ":INBOX=~/inbox")
    inbox.save(("INBOX",), BytesSource(message()))
    assert not (home / "inbox" / "maildirfolder").exists()


def test_display_separator(home):
    st = make(home)
    st.create_mailbox(("box", "sub"))
    assert st.save(("box", "sub"), BytesSource(message())).mailbox == "box.sub"
    st.display_separator = "/"
    assert st.save(("box", "sub"), BytesSource(message())).mailbox == "box/sub"


def test_utf8_option_stores_names_unencoded(home):
    st = make(home, ":UTF-8")
    st.create_mailbox(("Tést", "ü&x"))
    assert (home / "Maildir" / ".Tést.ü&x" / "maildirfolder").exists()


def test_fs_layout(home):
    st = make(home, ":LAYOUT=fs")
    assert st.default_separator == "/"
    st.create_mailbox(("box", "sub"))
    root = home / "Maildir"
    assert sorted(os.listdir(root / "box")) == ["sub"]
    assert sorted(os.listdir(root / "box" / "sub")) == ["cur", "dovecot-uidlist", "new", "tmp"]
    assert not st.mailbox_exists(("box",))       # only a parent, as Dovecot sees it
    st.create_mailbox(("box",))
    assert st.mailbox_exists(("box",))
    assert st.save(("box", "sub"), BytesSource(message())).mailbox == "box/sub"
    st.create_mailbox(("a.b",))
    assert (root / "a.b" / "new").is_dir()


@pytest.mark.parametrize("name", [("new",), ("x", "tmp"), ("cur",)])
def test_fs_layout_refuses_maildir_subdirectory_names(home, name):
    with pytest.raises(MailboxNameError):
        make(home, ":LAYOUT=fs").create_mailbox(name)


@pytest.mark.parametrize("name", [("a.b",), ("x", ".hidden"), ("v1.0",)])
def test_maildirplusplus_refuses_dots(home, name):
    with pytest.raises(MailboxNameError, match=r"'\.'"):
        make(home).create_mailbox(name)


def test_maildirplusplus_folder_name_length_is_bounded(home):
    st = make(home)
    st.create_mailbox(("x" * 120, "y" * 120))            # 243 bytes: fits NAME_MAX
    with pytest.raises(MailboxNameError):
        st.create_mailbox(("x" * 128, "y" * 128))


def test_control_and_inbox_locations(home):
    st = make(home, ":CONTROL=~/ctl:INBOX=~/inbox:INDEX=MEMORY")
    r = st.save(("INBOX",), BytesSource(message()))
    assert r.path.startswith(str(home / "inbox" / "new") + "/")
    st.create_mailbox(("box",))
    st.subscribe(("box",))
    assert (home / "ctl" / ".INBOX" / "dovecot-uidlist").exists()
    assert (home / "ctl" / ".box" / "dovecot-uidlist").exists()
    assert (home / "ctl" / "subscriptions").exists()
    assert (home / "ctl" / "dovecot-uidvalidity").exists()
    assert not (home / "inbox" / "dovecot-uidlist").exists()
    assert not (home / "Maildir" / ".box" / "dovecot-uidlist").exists()
    fs = make(home, ":LAYOUT=fs:CONTROL=~/ctlfs")
    fs.save(("INBOX",), BytesSource(message()))
    assert (home / "ctlfs" / "INBOX" / "dovecot-uidlist").exists()


# --- subscriptions ---------------------------------------------------------------------

def test_subscriptions_file_is_version_2_exactly(home):
    st = make(home)
    st.subscribe(("box", "sub"))
    st.subscribe(("Tést", "ü&x"))
    st.subscribe(("box", "sub"))
    st.subscribe(("inbox",))
    assert (home / "Maildir" / "subscriptions").read_bytes() == (
        b"V\t2\n\nbox\tsub\nT&AOk-st\t&APw-&-x\nINBOX\n")
    assert not (home / "Maildir" / "subscriptions.lock").exists()


def test_subscriptions_version_1_file_stays_version_1(home):
    (home / "Maildir").mkdir()
    (home / "Maildir" / "subscriptions").write_bytes(b"old.box\n")
    make(home).subscribe(("new", "box"))
    assert (home / "Maildir" / "subscriptions").read_bytes() == b"old.box\nnew.box\n"


def test_subscriptions_custom_file_name(home):
    make(home, ":SUBSCRIPTIONS=subs").subscribe(("x",))
    assert (home / "Maildir" / "subs").read_bytes() == b"V\t2\n\nx\n"


def test_subscriptions_symlink_is_refused(home, tmp_path):
    (home / "Maildir").mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep\n")
    os.symlink(victim, home / "Maildir" / "subscriptions")
    with pytest.raises(StorageError, match="symlink"):
        make(home).subscribe(("x",))
    assert victim.read_bytes() == b"keep\n"
    assert os.path.islink(home / "Maildir" / "subscriptions")


def test_subscriptions_lock_is_waited_for(home):
    import threading
    (home / "Maildir").mkdir()
    lock = home / "Maildir" / "subscriptions.lock"
    lock.write_bytes(b"")                    # someone else is rewriting the file
    timer = threading.Timer(1.0, lock.unlink)
    timer.start()
    start = time.monotonic()
    make(home).subscribe(("x",))
    timer.join()
    assert time.monotonic() - start >= 0.9
    assert (home / "Maildir" / "subscriptions").read_bytes() == b"V\t2\n\nx\n"
    assert not lock.exists()


# --- dovecot-uidlist ---------------------------------------------------------------------

def test_uidlist_format(home, fresh_stamps):
    st = make(home, clock=fixed_clock)
    a = st.save(("INBOX",), BytesSource(message(1)))
    b = st.save(("INBOX",), BytesSource(message(2)), flags=("\\Seen",))
    content = lines(home / "Maildir" / "dovecot-uidlist")
    m = HEADER_RE.match(content[0])
    assert m, content[0]
    # UIDVALIDITY starts from the clock (Dovecot's fallback when no
    # dovecot-uidvalidity exists yet): the injected one.
    assert int(m.group(1)) == int(FIXED_TIME)
    assert content[1:] == [f"1 :{os.path.basename(a.path)}\n",
                           f"2 :{os.path.basename(b.path).partition(':')[0]}\n"]


def test_uidvalidity_is_unique_per_mailbox_like_dovecot(home):
    st = make(home)
    st.save(("INBOX",), BytesSource(message()))
    st.create_mailbox(("a",))
    st.create_mailbox(("b",))
    root = home / "Maildir"
    values = [int(HEADER_RE.match(lines(p)[0]).group(1))
              for p in (root / "dovecot-uidlist", root / ".a" / "dovecot-uidlist",
                        root / ".b" / "dovecot-uidlist")]
    assert values == [values[0], values[0] + 1, values[0] + 2]
    assert (root / "dovecot-uidvalidity").read_bytes() == b"%08x" % values[2]
    markers = [n for n in os.listdir(root) if n.startswith("dovecot-uidvalidity.")]
    assert markers == [f"dovecot-uidvalidity.{values[2]:08x}"]


def test_existing_messages_are_numbered_first_when_uidlist_is_missing(home):
    root = home / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "new" / "1000000002.M5P1.old,S=1,W=1").write_bytes(b"b")
    (root / "cur" / "1000000001.M9P1.old,S=1,W=1:2,S").write_bytes(b"a")
    (root / "cur" / "1000000002.M10P1.old,S=1,W=1:2,").write_bytes(b"c")
    r = make(home).save(("INBOX",), BytesSource(message()))
    assert r.uid == 4
    assert [line.split(" :")[1].strip() for line in lines(root / "dovecot-uidlist")[1:]] == [
        "1000000001.M9P1.old,S=1,W=1", "1000000002.M5P1.old,S=1,W=1",
        "1000000002.M10P1.old,S=1,W=1", os.path.basename(r.path)]


def test_partial_last_line_is_cut_before_appending(home):
    st = make(home)
    st.save(("INBOX",), BytesSource(message(1)))
    path = home / "Maildir" / "dovecot-uidlist"
    good = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b"2 :1234.M1P1.crash")            # a crash mid-append
    r = st.save(("INBOX",), BytesSource(message(2)))
    assert r.uid == 2
    assert path.read_bytes() == good + f"2 :{os.path.basename(r.path)}\n".encode()


def test_next_uid_comes_from_header_when_higher(home):
    root = home / "Maildir"
    root.mkdir()
    (root / "dovecot-uidlist").write_text(
        "3 V1234 N40 G0123456789abcdef0123456789abcdef\n7 :1.M1P1.h,S=1,W=1\n")
    r = make(home).save(("INBOX",), BytesSource(message()))
    assert r.uid == 40
    header, records = index.read_uidlist(os.open(root, os.O_RDONLY))
    assert header.uid_validity == 1234 and [u for u, _, _ in records] == [7, 40]


@pytest.mark.parametrize("content", [
    "1 1234 5\n1 1.M1P1.h\n",                          # version 1 (Courier-era)
    "3 V1234 N5 Gnothex\n",
    "3 N5 G0123456789abcdef0123456789abcdef\n",          # no UIDVALIDITY
    "3 V1 N1 G0123456789abcdef0123456789abcdef\ngarbage here\n",
])
def test_unusable_uidlist_leaves_numbering_to_dovecot(home, content):
    root = home / "Maildir"
    root.mkdir()
    (root / "dovecot-uidlist").write_text(content)
    r = make(home).save(("INBOX",), BytesSource(message()))
    assert r.uid is None and "dovecot-uidlist" in r.uid_error
    assert os.path.dirname(r.path).endswith("/new")
    assert (root / "dovecot-uidlist").read_text() == content
    assert not (root / "dovecot-uidlist.lock").exists()


# --- the uidlist dotlock --------------------------------------------------------------------

def _dead_pid():
    import subprocess
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _plant_lock(home, content, age):
    root = home / "Maildir"
    root.mkdir(exist_ok=True)
    lock = root / "dovecot-uidlist.lock"
    lock.write_text(content)
    t = time.time() - age
    os.utime(lock, (t, t))
    return lock


@pytest.mark.parametrize("content,age,why", [
    ("", 0, "fresh, no pid"),
    ("1:" + HOST, 3600, "old but held by a live local process"),
    ("{dead}:otherhost", 60, "another host's lock, younger than 120 s"),
    ("{dead}:" + HOST, 0, "dead pid but younger than 2 s"),
])
def test_busy_lock_delivers_without_uid(home, content, age, why):
    lock = _plant_lock(home, content.format(dead=_dead_pid()), age)
    before = lock.read_bytes()
    r = make(home).save(("INBOX",), BytesSource(message()))
    assert r.uid is None, why
    assert "locked" in r.uid_error
    assert os.path.dirname(r.path).endswith("/new") and os.path.exists(r.path)
    assert lock.read_bytes() == before


@pytest.mark.parametrize("content,age,why", [
    ("{dead}:" + HOST, 10, "dead local pid, older than 2 s"),
    ("{me}:" + HOST, 10, "our own pid left behind"),
])
def test_stale_lock_is_broken(home, content, age, why):
    lock = _plant_lock(home, content.format(dead=_dead_pid(), me=os.getpid()), age)
    r = make(home).save(("INBOX",), BytesSource(message()))
    assert r.uid == 1, why
    assert not lock.exists()


# Locks without a live local pid go stale after 120 s without change of the lock
# or the uidlist: tests/storage/test_storage_dotlock.py checks that rule with a
# clock moved forward (a planted lock's ctime cannot be moved back).


def test_lock_is_released_after_each_save(home):
    st = make(home)
    st.save(("INBOX",), BytesSource(message()))
    st.create_mailbox(("a",))
    assert not [n for n, _, fs in os.walk(home) for f in fs if f.endswith(".lock")]


def test_deleted_uidlist_is_rebuilt_from_the_files(home):
    st = make(home)
    first = st.save(("INBOX",), BytesSource(message(1)))
    os.unlink(home / "Maildir" / "dovecot-uidlist")
    r = st.save(("INBOX",), BytesSource(message(2)))
    assert r.uid == 2           # the file already there is numbered first, as Dovecot would
    names = [line.split(" :")[1].strip() for line in lines(home / "Maildir" / "dovecot-uidlist")[1:]]
    assert names == [os.path.basename(first.path), os.path.basename(r.path)]


# --- LAYOUT=fs: Dovecot's file names are not folders (issue 12.6) ----------------------

@pytest.mark.parametrize("name", [
    ("dovecot-uidlist",), ("subscriptions",), ("dovecot-keywords",),
    ("dovecot-uidvalidity",), ("dovecot-uidvalidity.5f3a1b2c",), ("maildirsize",),
    ("dovecot.index",), ("dovecot.index.log",), ("dovecot.list.index",),
    ("dovecot-uidlist.lock",), ("dovecot-uidlist.tmp",), ("maildirfolder",),
    ("dovecot-shared",), ("dovecot-acl",), ("a", "dovecot-uidlist"), ("a", "maildirsize"),
    ("a", "cur"), (".temp.host.1.abc",),
])
@pytest.mark.parametrize("suffix", [":LAYOUT=fs", ":LAYOUT=fs:CONTROL=~/control"])
def test_fs_layout_refuses_dovecots_file_names(home, name, suffix):
    st = make(home, suffix)
    st.save(("INBOX",), BytesSource(message(0)))
    before = sorted(os.listdir(home / "Maildir"))
    with pytest.raises(MailboxNameError):
        st.create_mailbox(name)
    with pytest.raises(MailboxNameError):
        st.save(name, BytesSource(message(1)))
    assert sorted(os.listdir(home / "Maildir")) == before


@pytest.mark.parametrize("name", [("a", "subscriptions"), ("dovecot-lists",), ("Index",),
                                  ("new-mail",)])
def test_fs_layout_allows_names_that_only_look_alike(home, name):
    st = make(home, ":LAYOUT=fs")
    st.create_mailbox(name)
    assert st.save(name, BytesSource(message(1))).uid == 1


def test_maildirpp_keeps_such_names_as_folders(home):
    """Maildir++ stores them as ".dovecot-uidlist": no clash, Dovecot does the same."""
    st = make(home)
    st.create_mailbox(("dovecot-uidlist",))
    assert (home / "Maildir" / ".dovecot-uidlist" / "new").is_dir()


def test_inbox_needs_no_name_checker_but_others_are_checked():
    # A delivery to INBOX leaves mailbox_name.py unloaded (the plain path's import
    # budget); every other name, "inbox" in another case included, goes through it.
    from mailslot.errors import MailboxNameError
    from mailslot.storage.base import INBOX_NAME, checked_name

    assert checked_name(("INBOX",)) is INBOX_NAME
    assert checked_name(("inbox",)) == ("INBOX",)
    assert checked_name(["INBOX"]) == ("INBOX",)     # not the tuple: checked, made one
    for bad in (("a/b",), ("..",), (), "INBOX", ("~x",), ("a\x01",), ("",)):
        with pytest.raises(MailboxNameError):
            checked_name(bad)

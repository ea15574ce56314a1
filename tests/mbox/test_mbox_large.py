"""Large mbox deliveries: the fast copy keeps the format byte for byte.

The large-message path writes the encoder's pieces (memoryviews into the spool's
chunks) with writev() instead of joining them, and counts a message's lines (vsize)
only when the log shows them. Each of these could break the output at a chunk
border, the vsize in the log, or memory; so:
  - an independent line-by-line reference encoder (ORACLE) is compared with the
    encoder's pieces for From_ lines at every offset around chunk borders, in both
    variants, and mboxrd is unquoted back to the message (a round trip);
  - whole saves through MboxStorage, from a real pipe, with the From_ lines at
    every offset around the spool's COPY_CHUNK borders;
  - the installed engine on a pipe: the log's %p/%w and the stored bytes, peak
    memory of a 48 MB message.
"""

import os
import random
import re
import subprocess
import tempfile

import pytest

from mailslot import message as msgmod
from mailslot.log import DeliveryLog
from mailslot.message import read_message
from mailslot.storage import open_storage
from mailslot.storage.mbox_append import WRITEV_MAX
from mailslot.storage.mbox_format import MboxEncoder
from tests.mbox.mboxtest import check_structure, read_messages, unquote_mboxrd
from tests.support import needs_root, run_as, world_tempdir

CHUNK = msgmod.COPY_CHUNK
HEAD = b"From: a@example.org\nSubject: large\n\n"
# Lines an mbox writer must quote (mboxrd: all of them but the last; mboxo: the
# first), and lines it must leave alone.
BAIT = (b"From x\n", b">From y\n", b">>From z\n", b"From\n", b"Fromage\n", b" From\n")
# How far around each border a bait line is placed (every offset in between).
AROUND = 12
# Issue 19: peak memory under 40 MiB for any message size (without Sieve).
PEAK_MIB_MAX = 40


def oracle(message, variant):
    """The mbox form of a message's body by the rule, one line at a time (no
    chunks): mboxrd quotes /^>*From /, mboxo /^From /. Header lines are not
    touched by these tests' headers."""
    head, sep, body = message.partition(b"\n\n")
    lines = body.split(b"\n")
    pattern = re.compile(rb">*From " if variant == "mboxrd" else rb"From ")
    out = [b">" + line if pattern.match(line) else line for line in lines]
    data = head + sep + b"\n".join(out)
    return data if data.endswith(b"\n") else data + b"\n"


def baited(body_len, offsets, bait):
    """A body of body_len filler bytes with bait at each offset (moved to the
    line start at or after it), every line ending in LF."""
    body = bytearray(b"y" * 40 + b"\n") * (body_len // 41 + 1)
    for off in offsets:
        nl = body.rfind(b"\n", 0, off)
        at = nl + 1
        body[at:at] = bait
    return bytes(body[:body_len]).rstrip(b"y") + b"z\n"


def offsets_around(borders):
    return [b + d for b in borders for d in range(-AROUND, AROUND + 1) if b + d > 0]


def pieces_encoded(data, variant, chunk):
    encoder = MboxEncoder(variant)
    out = []
    for i in range(0, len(data), chunk):
        out.extend(encoder.feed_pieces(data[i:i + chunk]))
    return b"".join(out) + encoder.finish()


@pytest.mark.parametrize("variant", ["mboxrd", "mboxo"])
@pytest.mark.parametrize("bait", BAIT)
def test_bait_at_every_offset_around_chunk_borders(variant, bait):
    """A line to quote (or not) starting at, just before or just after a chunk
    border, with the border inside the '>' run, the "From" or the newline before."""
    chunk = 512
    for start in range(chunk - AROUND, chunk + AROUND):
        for gap in (0, 1, len(bait) - 1, len(bait), len(bait) + 1):
            body = b"a\n" * (start // 2) + bait + b"b" * gap + b"\n" + bait + b"c\n"
            message = HEAD + body
            want = oracle(message, variant)
            assert pieces_encoded(message, variant, chunk) == want, (start, gap)
            if variant == "mboxrd":
                assert unquote_mboxrd(want) == message


@pytest.mark.parametrize("variant", ["mboxrd", "mboxo"])
def test_random_bodies_in_random_chunkings_match_the_oracle(variant):
    rng = random.Random(19)
    atoms = [b"From ", b">", b"\n", b"x", b"F", b"rom", b" ", b"\n\n", b">From ", b"\nFrom "]
    for _ in range(1500):
        body = b"".join(rng.choice(atoms) for _ in range(rng.randint(0, 60)))
        message = HEAD + body
        chunk = rng.randint(1, 23)
        got = pieces_encoded(message, variant, chunk)
        assert got == oracle(message, variant), body
        encoder = MboxEncoder(variant)      # feed(): the same bytes, joined
        joined = b"".join(encoder.feed(message[i:i + chunk])
                          for i in range(0, len(message), chunk))
        assert joined + encoder.finish() == got
        assert not (b"\n" + got).count(b"\nFrom ")


def test_writev_batches_are_bounded_and_joined_in_order(tmp_path):
    """A body of nothing but lines to quote cuts a chunk into thousands of pieces:
    more than WRITEV_MAX are joined before writev(), in order."""
    body = b"From q\n" * (3 * CHUNK // 7)
    message = HEAD + body
    encoder = MboxEncoder("mboxrd")
    pieces = encoder.feed_pieces(message)
    assert len(pieces) > WRITEV_MAX
    out = _save(tmp_path, message, "mboxrd")
    assert out == oracle(message, "mboxrd")


def test_writer_finishes_short_writes_in_order(tmp_path, monkeypatch):
    """writev() may write less than asked (a regular file near RLIMIT_FSIZE does):
    the Writer goes on from the first byte not written, across pieces."""
    from mailslot.storage import mbox_append
    real_writev = os.writev
    calls = []

    def short_writev(fd, buffers):
        # At most 777 bytes a call, cut anywhere: inside a piece or between two.
        out, room = [], 777
        for buf in buffers:
            view = memoryview(buf)[:room]
            out.append(view)
            room -= len(view)
            if not room:
                break
        calls.append(len(buffers))
        return real_writev(fd, out)
    monkeypatch.setattr(mbox_append.os, "writev", short_writev)

    class Locks:
        touched = 0

        def touch_if_due(self):
            self.touched += 1
    pieces = [b"a" * 5000, memoryview(b"0123456789" * 30)[7:250], b">", b"z" * 9,
              b"", memoryview(b"tail\n")]
    pieces += [b"From q\n"] * (WRITEV_MAX + 5)
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        writer = mbox_append.Writer(fd, Locks())
        for piece in pieces:
            writer.write(piece)
        assert writer.flush() == sum(len(p) for p in pieces)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(bytes(p) for p in pieces)
    assert len(calls) > 1 and max(calls) <= WRITEV_MAX


def _pipe_message(data):
    """A Message read from a real pipe, as from an MTA (a child writes it)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(0)
    os.close(w)
    try:
        message = read_message(r)
        message.spool()                 # reads the pipe to its end
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    return message


def _save(tmp_path, data, variant, check=None):
    """Save data (from a pipe) into a fresh mbox; return the stored message."""
    root = tempfile.mkdtemp(dir=tmp_path)
    storage = open_storage(f"mbox:{root}:INBOX={root}/inbox", user="t", home=root,
                           hostname="h", settings={"mbox_variant": variant})
    message = _pipe_message(data)
    try:
        result = storage.save(("INBOX",), message.view([], "s@example.org"))
        if check is not None:
            check(message, result)
    finally:
        message.close()
    with open(f"{root}/inbox", "rb") as f:
        stored = f.read()
    assert check_structure(stored) == 1
    assert result.size == len(data)
    first, rest = stored.split(b"\n", 1)
    assert first.startswith(b"From s@example.org  ")
    assert rest.endswith(b"\n\n")
    return rest[:-1]


@pytest.mark.parametrize("variant", ["mboxrd", "mboxo"])
@pytest.mark.parametrize("bait", [b"From x\n", b">From y\n", b">>>From z\n"])
def test_saves_with_bait_around_every_spool_chunk_border(tmp_path, variant, bait):
    """Through the real save: a 1.2 MB message (a spool file, the streamed
    append) with bait lines around each COPY_CHUNK border of the spool."""
    size = 5 * CHUNK - 7
    body = baited(size, offsets_around([k * CHUNK - len(HEAD) for k in (1, 2, 3, 4)]), bait)
    message = HEAD + body
    assert len(message) > msgmod.SPOOL_MEMORY_MAX
    stored = _save(tmp_path, message, variant)
    assert stored == oracle(message, variant)
    if variant == "mboxrd":
        assert unquote_mboxrd(stored) == message


def test_vsize_is_counted_only_when_asked(tmp_path):
    """An mbox save leaves a large message's lines uncounted (the log's default
    format shows no vsize); asked for, the vsize is right."""
    message = HEAD + baited(3 * CHUNK, offsets_around([CHUNK]), b"From x\n")
    lines = message.count(b"\n")

    def check(msg, result):
        assert msg._spool._lines is None            # nothing counted by the save
        assert result.vsize == len(message) + lines
        assert msg._spool._lines == lines
    _save(tmp_path, message, "mboxrd", check)


def test_the_quota_check_does_not_count_lines(tmp_path):
    """The quota needs a message's size, not its vsize: checking one leaves a large
    message's lines uncounted (storage/quota._size_of)."""
    from mailslot.storage.quota import _size_of
    message = _pipe_message(HEAD + b"q\n" * (3 * CHUNK))
    try:
        view = message.view([b"X-Line: 1\n"], "s@example.org")
        assert _size_of(view) == len(HEAD) + 6 * CHUNK + len(b"X-Line: 1\n")
        assert message._spool._lines is None
    finally:
        message.close()


def test_the_log_calls_a_value_function_only_for_a_shown_name(tmp_path):
    calls = []

    def vsize():
        calls.append(1)
        return "1234"
    for template, want_calls, shown in (("msgid=%m: %$", 0, None),
                                        ("%$ vsize=%w", 1, "vsize=1234"),
                                        ("%$ vsize=%{vsize}", 1, "vsize=1234")):
        calls.clear()
        info = tmp_path / f"info-{len(template)}.log"
        with DeliveryLog(user="bob", log_path=str(tmp_path / "err.log"),
                         info_log_path=str(info), syslog_facility="mail",
                         deliver_log_format=template) as log:
            log.delivered({"msgid": "<m@x>", "vsize": vsize}, "saved mail to INBOX")
        assert len(calls) == want_calls, template
        if shown:
            assert info.read_text().rstrip().endswith(shown)


# -- the installed engine on a pipe --------------------------------------------------

@pytest.fixture
def engine(installed, mail_users):
    user = mail_users[0]
    base = world_tempdir("mailslot-large-")
    home = os.path.join(base, "home")
    os.mkdir(home, 0o700)
    os.chown(home, user.pw_uid, user.pw_gid)
    conf = os.path.join(base, "mailslot.yaml")
    with open(conf, "w") as f:
        f.write(f"mail_location: mbox:{home}/mail:INBOX={home}/mail/inbox\n"
                f"log_path: {home}/mailslot.log\nfirst_valid_uid: 100\n"
                'deliver_log_format: "size=%p vsize=%w %$"\n')
    os.chmod(conf, 0o644)
    yield user, home, [os.path.join(installed, "mailslot-lda"), "-c", conf,
                       "-f", "s@example.org"]
    subprocess.run(["rm", "-rf", base])


def _deliver_on_pipe(user, argv, data, timed=False):
    """Run the engine as user with data on a pipe; return (exit code, stderr,
    peak RSS in KiB or None)."""
    r, w = os.pipe()
    report = None
    if timed:
        report = tempfile.NamedTemporaryFile(prefix="mailslot-rss-", delete=False)
        report.close()
        os.chmod(report.name, 0o666)
        argv = ["/usr/bin/time", "-f", "%M", "-o", report.name, "--"] + argv
    cmd = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
           "--init-groups", "--"] + argv
    proc = subprocess.Popen(cmd, stdin=r, stderr=subprocess.PIPE, cwd="/",
                            env={"PATH": "/usr/bin:/bin", "HOME": user.pw_dir})
    os.close(r)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(w, view[:65536]):]
    finally:
        os.close(w)
    err = proc.stderr.read()
    code = proc.wait(timeout=300)
    peak = None
    if report is not None:
        with open(report.name) as f:
            peak = int(f.read().split()[-1])
        os.unlink(report.name)
    return code, err.decode(errors="replace"), peak


@needs_root
def test_engine_large_message_log_sizes(engine):
    user, home, argv = engine
    data = HEAD + baited(3 * 1024 * 1024, offsets_around([CHUNK, 2 * CHUNK]), b"From x\n")
    code, err, _ = _deliver_on_pipe(user, argv, data)
    assert code == 0, err
    code, err, _ = _deliver_on_pipe(user, argv, HEAD + b"small\n")
    assert code == 0, err
    messages = read_messages(f"{home}/mail/inbox")
    assert [raw for _f, raw in messages] == [data, HEAD + b"small\n"]
    with open(f"{home}/mailslot.log") as f:
        log = f.read()
    vsize = len(data) + data.count(b"\n")
    assert f"size={len(data)} vsize={vsize} saved mail to INBOX" in log
    small = HEAD + b"small\n"
    small_vsize = len(small) + small.count(b"\n")
    assert f"size={len(small)} vsize={small_vsize} saved mail to INBOX" in log


@needs_root
def test_engine_peak_memory_of_a_48_mb_message(engine):
    user, home, argv = engine
    data = HEAD + (b"From the start\n" + b"w" * 70 + b"\n") * (48 * 1024 * 1024 // 86)
    code, err, peak_kib = _deliver_on_pipe(user, argv, data, timed=True)
    assert code == 0, err
    assert peak_kib < PEAK_MIB_MAX * 1024, peak_kib
    assert os.path.getsize(f"{home}/mail/inbox") > len(data)

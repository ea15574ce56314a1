"""The storage conformance suite's fixtures: one adapter per mail storage format.

Every test in tests/storage/ that takes the `fmt` fixture runs once per format in
FORMATS. An adapter knows only what the Storage interface does not say: how to
spell a mail_location for the format, where its message files are, how to read a
saved message back. Where formats differ by design (mbox keeps no UIDs, adds a
missing final newline, cannot nest mailboxes in a mailbox) the adapter says so and
the tests ask it (as_stored, expected_uid, mailboxes_hold_children).
"""

import os

import pytest

from mailslot.storage import open_storage

HOSTNAME = "testhost"


class MaildirAdapter:
    name = "maildir"
    # (mail_location suffix, id): the layouts every conformance test runs under.
    layouts = (("", "maildir++"), (":LAYOUT=fs", "fs"),
               (":LAYOUT=fs:CONTROL=~/control:INDEX=~/index", "fs+control"),
               (":CONTROL=~/control:INBOX=~/inbox", "maildir++ control+inbox"))

    assigns_uids = True
    mailboxes_hold_children = True

    def location(self, suffix=""):
        return "maildir:~/Maildir" + suffix

    def as_stored(self, data):
        """The bytes a reader gets back for data: Maildir keeps them exactly."""
        return data

    def expected_uid(self, uid):
        """The UID a save returns when the format's n-th save there is uid."""
        return uid

    def place(self, result):
        """Where the saved message is: its own file."""
        return result.path

    def read(self, result):
        with open(result.path, "rb") as f:
            return f.read()

    def message_files(self, home):
        """Every file in a tmp/, new/ or cur/ directory below home."""
        found = []
        for root, _dirs, files in os.walk(home):
            if os.path.basename(root) in ("tmp", "new", "cur"):
                found.extend(os.path.join(root, f) for f in files)
        return sorted(found)

    def partial_files(self, home):
        """Files left in tmp/ (a save that did not finish)."""
        return [f for f in self.message_files(home) if os.path.basename(os.path.dirname(f)) == "tmp"]

    def symlink_points(self, storage, name):
        """Directories a save into name goes through, below the configured roots.

        Each is (path, what): "mail" where the message itself goes (a planted
        symlink must fail the save), "index" where only the UID list lives (the
        save succeeds without a UID).
        """
        loc = storage.location
        fs = loc.layout == "fs"
        parts = list(name) if fs else ["." + ".".join(name)]
        points, path = [], loc.root
        for part in parts:
            path = os.path.join(path, part)
            points.append((path, "mail"))
        points += [(os.path.join(path, "tmp"), "mail"), (os.path.join(path, "new"), "mail")]
        if loc.control:
            points.append((os.path.join(loc.control, *parts), "index"))
        return points

    def uidlist_path(self, storage, name):
        loc = storage.location
        fs = loc.layout == "fs"
        if name == ("INBOX",):
            base = (os.path.join(loc.control, "INBOX" if fs else ".INBOX") if loc.control
                    else (loc.inbox or loc.root))
        else:
            base = os.path.join(loc.control or loc.root,
                                *(list(name) if fs else ["." + ".".join(name)]))
        return os.path.join(base, "dovecot-uidlist")

    def flags_of(self, result):
        info = os.path.basename(result.path).partition(":2,")[2]
        letters = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
                   "T": "\\Deleted"}
        return {letters[c] for c in info if c in letters}

    def keywords_of(self, storage, name, result):
        """The keywords of a saved message: its file name's letters a-z, looked up
        in the mailbox's dovecot-keywords (beside dovecot-uidlist)."""
        info = os.path.basename(result.path).partition(":2,")[2]
        wanted = [c for c in info if "a" <= c <= "z"]
        if not wanted:
            return set()
        path = os.path.join(os.path.dirname(self.uidlist_path(storage, name)),
                            "dovecot-keywords")
        names = {}
        with open(path, "rb") as f:
            for line in f.read().decode("ascii").splitlines():
                idx, _, kw = line.partition(" ")
                names[chr(ord("a") + int(idx))] = kw
        return {names[c] for c in wanted}


class MboxAdapter:
    """mbox: messages are spans of one file, read back with Python's mailbox.mbox.

    What the format does not keep, by design (as Dovecot's mbox): a message that
    lacks a final newline gets one, and IMAP UIDs are left for the IMAP server to
    assign (uid None). A mailbox name holds mail or subfolders, not both.
    """
    name = "mbox"
    layouts = (("", "fs"), (":INBOX=~/inbox", "inbox-outside-root"),
               (":INDEX=~/index:UTF-8", "index+utf8"))
    assigns_uids = False
    mailboxes_hold_children = False
    # Header fields the mbox format owns (Dovecot hides them from IMAP clients).
    METADATA_FIELDS = (b"status:", b"x-status:", b"x-keywords:")

    def location(self, suffix=""):
        return "mbox:~/mail" + suffix

    def as_stored(self, data):
        return data + b"\n" if data and not data.endswith(b"\n") else data

    def expected_uid(self, uid):
        return None

    def place(self, result):
        """Where the saved message is: a span of an mbox file (path is None)."""
        assert result.path is None
        return result.mbox_path, result.offset

    def _raw(self, result):
        """The stored message at result.offset, From_ line removed, as mailbox.mbox
        reads it (its index: how many From_ lines come before the offset)."""
        import mailbox
        with open(result.mbox_path, "rb") as f:
            data = f.read()
        assert data[result.offset:result.offset + 5] == b"From "
        assert result.offset == 0 or data[result.offset - 1:result.offset] == b"\n"
        index = data[:result.offset].count(b"\nFrom ") + (1 if result.offset else 0)
        box = mailbox.mbox(result.mbox_path, create=False)
        try:
            return box.get_bytes(box.keys()[index])
        finally:
            box.close()

    def read(self, result):
        """The message as a reader presents it: unquoted (mboxrd), without the
        Status:/X-Status:/X-Keywords: fields that carry its flags."""
        raw = self._raw(result)
        head, sep, body = raw.partition(b"\n\n")
        lines = [line for line in head.split(b"\n")
                 if not line.lower().startswith(self.METADATA_FIELDS)]
        raw = b"\n".join(lines) + sep + body
        return unquote_mboxrd(raw)

    def flags_of(self, result):
        head = self._raw(result).partition(b"\n\n")[0]
        letters = {"R": "\\Seen", "A": "\\Answered", "F": "\\Flagged", "T": "\\Draft",
                   "D": "\\Deleted"}
        flags = set()
        for line in head.split(b"\n"):
            if line.lower().startswith(self.METADATA_FIELDS[:2]):
                flags |= {letters[c] for c in line.partition(b":")[2].decode().strip()}
        return flags

    def keywords_of(self, storage, name, result):
        """The keywords of a saved message: its X-Keywords: field's names."""
        head = self._raw(result).partition(b"\n\n")[0]
        found = set()
        for line in head.split(b"\n"):
            if line.lower().startswith(b"x-keywords:"):
                found |= set(line.partition(b":")[2].decode("ascii").split())
        return found

    def mbox_files(self, home):
        """Every mbox file below home (not Dovecot's .imap, not .subscriptions)."""
        found = []
        for root, dirs, files in os.walk(home):
            dirs[:] = [d for d in dirs if d != ".imap"]
            for f in files:
                path = os.path.join(root, f)
                if f.endswith(".lock") or f == ".subscriptions" or os.path.islink(path):
                    continue
                found.append(path)
        return sorted(found)

    def message_files(self, home):
        """One entry per message, "<mbox path>#<n>", in every mbox below home."""
        import mailbox
        found = []
        for path in self.mbox_files(home):
            box = mailbox.mbox(path, create=False)
            try:
                found += [f"{path}#{i}" for i in range(len(box.keys()))]
            finally:
                box.close()
        return found

    def partial_files(self, home):
        """What an unfinished save could leave: a pending journal record, a lock
        file, an mbox whose last message does not end with its blank line."""
        left = []
        for root, dirs, files in os.walk(home):
            for f in files:
                path = os.path.join(root, f)
                if f.endswith(".lock"):
                    left.append(path)
                elif f == "mailslot-journal":
                    with open(path, "rb") as fh:        # a record, not NUL bytes
                        if fh.read(1) not in (b"", b"\0"):
                            left.append(path)
        for path in self.mbox_files(home):
            with open(path, "rb") as fh:
                data = fh.read()
            if data and not (data.startswith(b"From ") and data.endswith(b"\n\n")):
                left.append(path)
        return sorted(left)

    def symlink_points(self, storage, name):
        """The folder directories a save into name walks through (all hold mail)."""
        points, path = [], storage.location.root
        for part in name[:-1]:
            path = os.path.join(path, part)
            points.append((path, "mail"))
        return points

    def uidlist_path(self, storage, name):
        return None             # no dovecot-uidlist: Dovecot's index holds the UIDs


def unquote_mboxrd(data):
    """Undo mboxrd quoting: one '>' less on every line matching ^>+From ."""
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b">") and line.lstrip(b">").startswith(b"From "):
            lines[i] = line[1:]
    return b"\n".join(lines)


FORMATS = {"maildir": MaildirAdapter(), "mbox": MboxAdapter()}
LAYOUT_PARAMS = [pytest.param((fmt, suffix), id=f"{name}-{lid}")
                 for name, fmt in FORMATS.items() for suffix, lid in fmt.layouts]


@pytest.fixture(params=LAYOUT_PARAMS)
def fmt_layout(request):
    return request.param


@pytest.fixture
def fmt(fmt_layout):
    return fmt_layout[0]


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return str(path)


@pytest.fixture
def make_storage(fmt_layout, home):
    """make_storage(**open_storage keywords) for the current format and layout."""
    fmt, suffix = fmt_layout

    def make(location_suffix="", **kwargs):
        kwargs.setdefault("hostname", HOSTNAME)
        return open_storage(fmt.location(suffix + location_suffix), user="test", home=home,
                            **kwargs)
    return make


@pytest.fixture
def storage(make_storage):
    return make_storage()

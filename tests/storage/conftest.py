"""The storage conformance suite's fixtures: one adapter per mail storage format.

Every test in tests/storage/ that takes the `fmt` fixture runs once per format in
FORMATS. An adapter knows only what the Storage interface does not say: how to
spell a mail_location for the format, where its message files are, how to read a
saved message back. mbox joins by adding an adapter here.
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

    def location(self, suffix=""):
        return "maildir:~/Maildir" + suffix

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


FORMATS = {"maildir": MaildirAdapter()}
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

"""Message sources for the storage tests: the smallest real implementations.

A source writes the whole message to the fd it is given and returns (size, vsize),
vsize counting every LF as CRLF (Dovecot's W=).
"""

import os

from mailslot.storage import open_storage

TEST_HOST = "testhost"


def vsize_of(data):
    return len(data) + data.count(b"\n")


class BytesSource:
    """A message held in memory."""

    def __init__(self, data, stored_path=None):
        self.data = data
        self.stored_path = stored_path

    def write_to(self, fd):
        view = memoryview(self.data)
        while view:
            view = view[os.write(fd, view):]
        return len(self.data), vsize_of(self.data)


class FailingSource(BytesSource):
    """Writes the first `after` bytes, then raises exc (a reader dying mid-message)."""

    def __init__(self, data, after, exc):
        super().__init__(data)
        self.after, self.exc = after, exc

    def write_to(self, fd):
        os.write(fd, self.data[:self.after])
        raise self.exc


class LyingSource(BytesSource):
    """Reports a size other than what it wrote (a buggy reader)."""

    def write_to(self, fd):
        size, vsize = super().write_to(fd)
        return size + 1, vsize + 1


def message(i=0, body="Hello.\n"):
    return (f"From: a{i}@example.org\nTo: b@example.org\nSubject: test {i}\n\n{body}").encode()


def maildir_storage(home, suffix="", **kw):
    """A Maildir storage at <home>/Maildir (plus location suffix), host TEST_HOST."""
    kw.setdefault("hostname", TEST_HOST)
    return open_storage("maildir:~/Maildir" + suffix, user="t", home=str(home), **kw)

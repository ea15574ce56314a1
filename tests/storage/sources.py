"""Message sources for the storage tests: the shared BytesSource and two faulty ones.

BytesSource is tests/message_source.py's (one class for every storage test); the
faulty sources here derive from it.
"""

import os

from mailslot.storage import open_storage
from tests.message_source import BytesSource, vsize_of  # noqa: F401 (re-exported)

TEST_HOST = "testhost"


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

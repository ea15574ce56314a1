"""The message source the storage tests hand to Storage.save(): bytes in memory.

One class for every test that saves without the engine's reader, in-process or in a
child run as another uid (tests/interop/saver.py, tests/mbox/deliverer.py, the
scripts of tests/mbox and tests/storage): standard library only, so a child needs
just the repository on sys.path.

A source writes the whole message to the fd it is given and returns (size, vsize),
vsize counting every LF as CRLF (Dovecot's W=), as the engine's reader reports it.
stored_path is a file the message already is in (Maildir hard-links it when set);
envelope_sender is what an mbox From_ line names (None: the storage's default).
"""

import os


def vsize_of(data):
    return len(data) + data.count(b"\n")


class BytesSource:
    """A message held in memory."""

    def __init__(self, data, stored_path=None, envelope_sender=None):
        self.data = data
        self.stored_path = stored_path
        if envelope_sender is not None:
            self.envelope_sender = envelope_sender

    def write_to(self, fd):
        view = memoryview(self.data)
        while view:
            view = view[os.write(fd, view):]
        return len(self.data), vsize_of(self.data)

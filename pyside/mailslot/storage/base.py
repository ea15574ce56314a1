"""The storage interface (Storage) and what one save did (SaveResult).

Every mail format (maildir.py, mbox.py) implements Storage; open_storage() in the
package picks one. Kept apart from the package's __init__ so that the formats
import it without importing the package that imports them.

Errors and security: see the package docstring (storage/__init__.py).
"""


class SaveResult:
    """What one save did, for the log and for hard-linking further copies."""

    __slots__ = ("mailbox", "uid", "path", "size", "_vsize", "uid_error", "mbox_path",
                 "offset", "warnings")

    def __init__(self, mailbox, uid, path, size, vsize, uid_error=None, *, mbox_path=None,
                 offset=None, warnings=()):
        self.mailbox = mailbox      # name for the log, e.g. "INBOX" or "box.sub"
        self.uid = uid              # IMAP UID in dovecot-uidlist; None if not assigned
        self.path = path            # final path of the message file (None for mbox)
        # vsize may be a function, called on first use (mbox: counting a large
        # message's lines costs more than copying it, and only some logs show it).
        self.size, self._vsize = size, vsize
        self.uid_error = uid_error  # why uid is None (lock busy, ...), else None
        self.mbox_path = mbox_path  # mbox: the mbox file the message was appended to
        self.offset = offset        # mbox: where its From_ line begins in that file
        self.warnings = warnings    # things the log should say (an mbox repaired, ...)

    @property
    def vsize(self):
        if callable(self._vsize):
            self._vsize = self._vsize()
        return self._vsize

    def __repr__(self):
        where = (f"path={self.path!r}" if self.mbox_path is None else
                 f"mbox_path={self.mbox_path!r}, offset={self.offset}")
        return (f"SaveResult(mailbox={self.mailbox!r}, uid={self.uid!r}, {where}, "
                f"size={self.size}, vsize={self.vsize})")


class Storage:
    """The interface every mail storage format implements."""

    default_separator = "."         # '.' for Maildir++, '/' for LAYOUT=fs
    # True when the storage keeps its own copy of a source it saved (mbox spools
    # it), so that saving the same source again works even once the input is
    # consumed and no stored_path exists.
    keeps_source_copy = False

    def mailbox_exists(self, name):
        """True if the mailbox (a tuple of components) can receive mail."""
        raise NotImplementedError

    def create_mailbox(self, name):
        """Create the mailbox (idempotent), with parents where the format needs them."""
        raise NotImplementedError

    def subscribe(self, name):
        """Add the mailbox to the subscriptions file (idempotent)."""
        raise NotImplementedError

    def save(self, name, source, *, flags=()):
        """Write one message into the mailbox; return a SaveResult."""
        raise NotImplementedError


# The inbox's name, here so that a delivery to INBOX (the plain path) needs no name
# checker: mailbox_name.py is loaded only for another mailbox (docs/benchmarks.md).
INBOX = "INBOX"
INBOX_NAME = (INBOX,)


def checked_name(name):
    """mailbox_name.check_components(name), loading the checker only when name is
    not exactly ("INBOX",), which is valid as it stands."""
    if type(name) is tuple and name == INBOX_NAME:
        return INBOX_NAME
    from ..mailbox_name import check_components
    return check_components(name)


def encode_mutf7(part):
    """mailbox_name.encode_mutf7, loaded when a folder name needs it."""
    from ..mailbox_name import encode_mutf7 as encode
    return encode(part)

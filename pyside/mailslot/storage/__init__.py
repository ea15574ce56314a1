"""Mail storage: where a delivered message is written, in a format Dovecot reads.

    storage = open_storage("maildir:~/Maildir", user="bob", home="/home/bob",
                           hostname="mx1")
    result = storage.save(("INBOX",), source)   # -> SaveResult (uid, path, sizes)

open_storage() parses Dovecot's mail_location (see location.py) and returns the
Storage for its format: Maildir (maildir.py) or mbox (mbox.py; it reads its mbox_*
settings and mail_privileged_group from the settings dict when one is given, else
uses the defaults of config.SCHEMA). A mailbox is named by a tuple of Unicode
components, ("INBOX",) for the inbox; turn a user's "INBOX/box/sub" into one with
mailbox_name.split_mailbox_name().

A message source is any object with
    source.write_to(fd) -> (size, vsize)   write the whole message (LF line ends)
                                           to fd; vsize counts each LF as CRLF
    source.stored_path                     a file this delivery already saved with
                                           the same bytes, or None (hard-linked
                                           instead of written again when possible)
    source.sizes (optional)                (size, vsize) of stored_path, needed when
                                           its name has no ,S=/,W= (the -p file)
    source.envelope_sender (optional)      for mbox's From_ line ("" = MAILER-DAEMON);
                                           else from_line_sender, else Return-Path

An mbox message has no file of its own: its SaveResult has path None (so nobody
takes the whole mbox for the message) and mbox_path/offset instead; the mbox
storage keeps its spooled copy of a source for further saves of the same source.

Errors: ConfigError (bad mail_location, unsupported format or fsync mode),
MailboxNameError, MailboxNotFoundError, StorageError (every OSError, with the path
and the reason; ENOSPC, EDQUOT and the RLIMIT_FSIZE limit behind EFBIG named). All
are temporary: the MTA keeps the message.

Security: a storage never writes outside its roots: names are validated, and
directories below the roots are opened one by one with O_NOFOLLOW, so a symlink
planted inside a Maildir is refused, not followed. It never runs as root by design
of the engine, but it relies on nothing but the filesystem's own permissions.
"""

from ..errors import ConfigError

# The interface and the save result live in base.py (the formats import them
# from there, not from this package: no import cycle); re-exported here.
from .base import SaveResult, Storage  # noqa: F401

FSYNC_MODES = ("optimized", "always", "never")


def open_storage(mail_location, *, user, home, hostname, mail_fsync="optimized",
                 settings=None, dotlock_helper=None, clock=None):
    """Return the Storage for a mail_location whose %variables are already expanded.

    settings: the engine's settings dict (mbox reads mbox_* and
    mail_privileged_group from it). dotlock_helper: the mailslot-dotlock binary
    (default: beside the installed engine). clock: seconds since the epoch for what
    a save dates (Maildir names, a new UIDVALIDITY, mbox From_ lines); None is the
    system clock. Tests pass a fixed one.
    """
    from .location import parse_mail_location

    if mail_fsync not in FSYNC_MODES:
        raise ConfigError(f"must be one of {', '.join(FSYNC_MODES)}, not {mail_fsync!r}",
                          key="mail_fsync")
    if not hostname or any(c in hostname for c in "\0\r\n\t"):
        raise ConfigError(f"invalid hostname {hostname!r}", key="hostname")
    location = parse_mail_location(mail_location, home=home)
    if location.format == "maildir":
        from .maildir import MaildirStorage
        if clock is None:
            return MaildirStorage(location, user=user, hostname=hostname, mail_fsync=mail_fsync)
        return MaildirStorage(location, user=user, hostname=hostname, mail_fsync=mail_fsync,
                              clock=clock)
    if location.format == "mbox":
        from .mbox import MboxStorage
        return MboxStorage(location, user=user, hostname=hostname, mail_fsync=mail_fsync,
                           settings=settings, dotlock_helper=dotlock_helper, clock=clock)
    raise ConfigError(f"the {location.format} format is not supported", key="mail_location")

"""The exception tree, and the one table that maps each failure to its answers.

Every failure the engine can meet is a subclass of MailslotError. This module holds
the base classes that a delivery's modules name when they load (MailslotError,
TemporaryError, ConfigError, StorageError and its mailbox refinements) and the table;
the other kinds (usage, unknown user, rejection, userdb, privilege, message, log,
sending, quota, Sieve) are built the first time one is named (errors.UserdbError,
"from .errors import SieveError": see _MORE): a delivery that goes well never does. The MTA sees one of
three answers for it: a sysexits code (pipe delivery), an LMTP reply and an enhanced
status code (RFC 3463) for a DSN. They are looked up in FAILURES, in one place, so
that no module decides on its own whether a failure bounces mail.

The rule the table encodes: only a caller's mistake (usage), an unknown user and a
deliberate rejection are permanent. Everything else -- a bad configuration, an
unreachable user database, a full disk, a bug -- is temporary (EX_TEMPFAIL), so the
MTA keeps the message and tries again. An exception that is not a MailslotError is
treated the same way by exit_code_for().

Security: messages of these exceptions reach the MTA's log and the sender's bounce;
they must not carry message content, only the reason.
"""

import _thread      # built in: nothing more to load (the lock of __getattr__)

# sysexits.h values (BSD), the exit codes dovecot-lda and every MTA understand.
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_OSERR = 71
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class MailslotError(Exception):
    """Base of every failure mailslot reports; temporary unless a subclass says not."""


class TemporaryError(MailslotError):
    """The delivery cannot be done now; the MTA must keep the message and retry."""


class ConfigError(TemporaryError):
    """The settings are wrong. Temporary: a typo must never bounce mail.

    file, line and key locate the problem when they are known.
    """

    def __init__(self, message, *, file=None, line=None, key=None):
        self.file, self.line, self.key = file, line, key
        where = ""
        if file is not None:
            where = f"{file}"
            if line is not None:
                where += f" line {line}"
            where += ": "
        if key is not None:
            message = f"{key}: {message}"
        super().__init__(where + message)


class StorageError(TemporaryError):
    """A mailbox could not be written; nothing partial is left visible."""


class MailboxNameError(StorageError):
    """A mailbox name is not valid (empty part, control character, bad UTF-8, ...)."""


class MailboxNotFoundError(StorageError):
    """The mailbox does not exist and may not be created."""


class Failure:
    """How one kind of failure is answered: sysexits code, LMTP reply, DSN status."""

    __slots__ = ("exit_code", "lmtp_code", "dsn_status")

    def __init__(self, exit_code, lmtp_code, dsn_status):
        self.exit_code, self.lmtp_code, self.dsn_status = exit_code, lmtp_code, dsn_status


# The one table, by class name (the classes of _MORE are built only when first
# named). Lookup walks the class's MRO, so a subclass without its own row
# answers as its nearest listed ancestor; only the classes of this tree count
# (_TREE), never another package's class that happens to share a name. DSN codes:
# RFC 3463.
FAILURES = {
    "UsageError": Failure(EX_USAGE, 451, "4.3.5"),
    "UserUnknownError": Failure(EX_NOUSER, 550, "5.1.1"),
    "RejectedError": Failure(EX_NOPERM, 550, "5.7.1"),
    "ConfigError": Failure(EX_TEMPFAIL, 451, "4.3.5"),
    "UserdbError": Failure(EX_TEMPFAIL, 451, "4.3.0"),
    "PrivilegeError": Failure(EX_TEMPFAIL, 451, "4.3.0"),
    "MessageError": Failure(EX_TEMPFAIL, 451, "4.3.0"),
    "StorageError": Failure(EX_TEMPFAIL, 451, "4.2.0"),
    "QuotaExceededError": Failure(EX_TEMPFAIL, 452, "4.2.2"),
    "QuotaRejectedError": Failure(EX_NOPERM, 552, "5.2.2"),
    "LogError": Failure(EX_TEMPFAIL, 451, "4.3.0"),
    "SendError": Failure(EX_TEMPFAIL, 451, "4.3.0"),
    "TemporaryError": Failure(EX_TEMPFAIL, 451, "4.3.0"),
    "MailslotError": Failure(EX_TEMPFAIL, 451, "4.3.0"),
}

# Anything that is not a MailslotError (a bug, an unexpected OSError) is temporary.
UNEXPECTED = Failure(EX_TEMPFAIL, 451, "4.3.0")

_TREE = ("mailslot.errors",)


def failure_for(exc):
    """Return the Failure row that answers the exception exc."""
    for cls in type(exc).__mro__:
        if cls.__module__ in _TREE:
            row = FAILURES.get(cls.__name__)
            if row is not None:
                return row
    return UNEXPECTED


def exit_code_for(exc):
    """Return the sysexits code for exc: the only place that decides it."""
    return failure_for(exc).exit_code


# The kinds of failure that no module of a delivery names when it loads: a caller's
# mistake, an unknown user, a deliberate rejection, and the temporary failures of
# the user database, the process's identity, the message's source, the log,
# outgoing mail, the quota and Sieve. Python builds a class when its statement
# runs (about 10 us each here, a tenth of the module's import), so these are
# built the first time one is named -- errors.X or "from .errors import X" reach
# __getattr__ below (PEP 562) -- which a delivery that goes well never does.
# Each is then an ordinary attribute of this module, named mailslot.errors.X.
_MORE = frozenset(("UsageError", "UserUnknownError", "RejectedError", "UserdbError",
                   "PrivilegeError", "MessageError", "LogError", "SendError",
                   "QuotaExceededError", "QuotaRejectedError", "SieveError"))


_MORE_LOCK = _thread.allocate_lock()


def __getattr__(name):
    """errors.X for a class of _MORE (called only for a name not defined yet)."""
    if name not in _MORE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Why the lock: mailslot-lmtpd's threads must all see one class per name, or
    # one thread's "except LogError" would miss another thread's LogError.
    with _MORE_LOCK:
        if name not in globals():
            made = _define_more()
            for cls in made.values():
                cls.__qualname__ = cls.__name__     # mailslot.errors.UsageError
            globals().update(made)
    return globals()[name]


def _define_more():
    """Build the classes of _MORE; return {name: class}."""

    class UsageError(MailslotError):
        """The command line is wrong (an unknown option, a missing argument)."""

    class UserUnknownError(MailslotError):
        """The user database does not know the recipient."""

    class RejectedError(MailslotError):
        """The message is refused on purpose (a Sieve reject; exit 77 with or without -e)."""

    class UserdbError(TemporaryError):
        """A user database could not answer (down, timed out, malformed reply)."""

    class PrivilegeError(TemporaryError):
        """The process does not hold the identity it must (root, wrong uid, capabilities)."""

    class MessageError(TemporaryError):
        """The message could not be read from its source."""

    class LogError(TemporaryError):
        """The delivery log could not be written; a delivery that cannot be logged fails."""

    class SendError(TemporaryError):
        """Outgoing mail (a rejection, redirect, vacation reply, notification) could not
        be handed to sendmail or the submission server; temporary only while nothing is
        saved (send/outgoing.py decides)."""

    class QuotaExceededError(StorageError):
        """The message does not fit in the user's quota (storage/quota.py). A
        StorageError: a -m mailbox or fileinto over its quota falls back to INBOX.
        Its row is the temporary answer (quota_full_tempfail: yes); with the setting
        off the delivery turns it into QuotaRejectedError (deliver.py)."""

    class QuotaRejectedError(RejectedError):
        """Over quota with quota_full_tempfail off: the message is refused for good
        (77 with -e; LMTP 552 5.2.2). Without -e dovecot-lda's way is a DSN to the
        sender and exit 0; this error is for when the refusal is the MTA's to send."""

    class SieveError(MailslotError):
        """A Sieve script could not be compiled or run (or its cache is unusable).

        Never fails a delivery: the Sieve runner reports it and falls back to implicit
        keep, as Pigeonhole does; the table row (via MailslotError) is a safety net.
        """

    return {name: cls for name, cls in locals().items() if name in _MORE}

"""The delivery core: one message to one recipient, for the pipe and for LMTP.

    context = DeliveryContext(rcpt.settings, rcpt.user, envelope, mailbox="Lists",
                              extra=rcpt.extra)
    saved = deliver(context, message)       # -> [SaveResult]

deliver() is the pipeline for one recipient of an already resolved message:

    log -> the recipient's view of the message (its header lines) -> storage
    -> Sieve or the -m mailbox (a missing one created unless no_create) -> save -> log

Sieve filing is sieve_filing.py's, imported only when script_location.has_scripts()
finds a script: the plain path loads neither it nor the interpreter.

Its inputs are all in the DeliveryContext and the message source; it reads no
command line, no environment, no fd 0 and not the process's uid, so a server can
call it once per recipient, one after another, in one process. The fronts do the
process-wide steps: cli.py (the pipe: refusing root, the relay's promise, the
environment, fd 0, "is it our uid") and an LMTP server.

The message is a message.Message: read from its source once, spooled by the
delivering process, shared by every recipient; what one recipient adds (nothing
today: dovecot-lda adds no line, lda_original_recipient_header is read by cli.py;
room for Delivered-To, Return-Path) is a message.MessageView, never a change to
the shared message.

A message that cannot be saved into the -m mailbox goes to INBOX, as dovecot-lda
does; one that cannot be saved to INBOX either is a temporary failure. Once a copy
is saved, nothing afterwards turns the delivery into a failure the MTA would bounce.

Timers and signals: nothing here installs a process-wide handler. The steps that need
one install it for their own duration and put the previous one back (a lock wait's
SIGALRM in storage/locking.py, the Sieve CPU limit's SIGPROF in sieve/cpu.py, mbox's
signal guard in storage/mbox_lock.py), so deliveries can follow one another in one
process (tests/engine/test_core.py runs several).

Errors: every failure is a MailslotError subclass; the front maps it to its answer
(cli: errors.exit_code_for). RejectedError for a Sieve reject. A message over the
user's quota (storage/quota.py, checked in filing.save_to) is over_quota()'s:
QuotaExceededError (temporary) with quota_full_tempfail, else QuotaRejectedError
(-e) or a DSN to the sender.

Security: the core trusts its context: the front has checked that this process may
write as context.user (cli: uid equal to ours, never root). Mailbox names from -m
and from scripts pass filing.mailbox_components.
"""

import os
import time

from . import errors
from .homedir import check_mail_root

# DeliveryContext(sender=DEFAULT_SENDER): the settings' transport, built on first use.
DEFAULT_SENDER = "default"


class DeliveryContext:
    """Everything one recipient's delivery depends on besides the message.

    settings   this recipient's settings (recipient.resolve: a private copy,
               userdb fields and -o applied, %variables expanded)
    user       the userdb.User (name, uid, gid, home, fields)
    envelope   {"from": sender ("" for <>), "to": final recipient,
                "orig_to": original recipient}
    mailbox    the -m mailbox (None: INBOX); no_create (-n), subscribe (-s),
               stderr_reject (-e)
    sender     the sender for outgoing mail (redirect, vacation, notify,
               rejections): an OutgoingMail-like object (send/outgoing.py); None:
               nothing is sent; DEFAULT_SENDER (the default): one built from the
               settings (sendmail_path or submission_host) when a script first sends
    clock      seconds since the epoch (time.time-like): the log's stamps, what the
               save dates (Maildir names, a new UIDVALIDITY, mbox From_ lines),
               Sieve's currentdate and outgoing mail's clock; tests fix it
    extra      userdb fields that are not settings (quota_rule ...), for later
               features; hostname (None: this system's, for Maildir names)
    warnings   lines the delivery log should carry first (the front's notes)
    report     report(text): where a line goes that the delivery log could not
               take (the pipe: stderr, for the MTA's log)
    log        a DeliveryLog; None: deliver() opens one from the settings
    only_copy  True when this is the message's only delivery (the pipe): without
               Sieve, a Maildir copy is then written as the input is read
    log_tag    a word for the log prefix after the pid (the fast path's "handoff")
    refuse_over_quota  over quota (quota_full_tempfail off): refuse at the
               protocol level (QuotaRejectedError: LMTP's 552 5.2.2) instead of
               mailing a DSN as the pipe does without -e
    """

    def __init__(self, settings, user, envelope, *, mailbox=None, no_create=False,
                 subscribe=False, stderr_reject=False, sender=DEFAULT_SENDER,
                 clock=time.time,
                 extra=None, hostname=None, warnings=(), report=None, log=None,
                 only_copy=False,
                 log_tag=None, refuse_over_quota=False):
        self.settings = settings
        self.user = user
        self.envelope = envelope
        self.mailbox = mailbox
        self.no_create = no_create
        self.subscribe = subscribe
        self.stderr_reject = stderr_reject
        self.sender = sender
        self.clock = clock
        self.extra = dict(extra or {})
        self.hostname = hostname
        self.warnings = list(warnings)
        self.report = report or _report_to_stderr
        self.log = log
        self.only_copy = only_copy
        self.log_tag = log_tag
        self.refuse_over_quota = refuse_over_quota

    @property
    def default_sender(self):
        """True when outgoing mail goes through a sender built from the settings."""
        return self.sender == DEFAULT_SENDER

    def build_sender(self, log, duplicates=None):
        """The settings' sender (outgoing_mail), for default_sender deliveries."""
        return outgoing_mail(self.settings, self.envelope, log, duplicates,
                             clock=self.clock)


def deliver(context, message):
    """Deliver message (a message.Message) for context's recipient; return the
    SaveResults ([] when Sieve discarded it)."""
    settings, user, envelope = context.settings, context.user, context.envelope
    check_mail_root(settings, user)     # a missing home: made, or said what to do
    if context.log is not None:
        return _deliver(context, message, context.log)
    # A log opened here is closed here: a long-lived process must not keep one
    # file descriptor per delivery.
    with open_log(context) as log:
        return _deliver(context, message, log)


def _deliver(context, message, log):
    settings, user, envelope = context.settings, context.user, context.envelope
    for warning in list(user.warnings) + context.warnings:
        log.warning(warning)
    source = message.view([], envelope["from"])

    from .storage import open_storage
    # Maildir names carry the system's host name (gethostname), as Dovecot's do;
    # the hostname setting is for the mail mailslot sends.
    storage = open_storage(settings["mail_location"], user=user.name, home=user.home,
                           hostname=context.hostname or os.uname().nodename,
                           mail_fsync=settings["mail_fsync"], settings=settings,
                           clock=context.clock)
    namespace = settings["namespace"]["inbox"]
    # No separator set: the format's own, as Dovecot ('.' Maildir++, '/' mbox and
    # LAYOUT=fs). Logged names then read as the user's client shows them. (This
    # recipient's own copy of the settings: nobody else sees the change.)
    if not namespace.get("separator"):
        namespace["separator"] = storage.default_separator
    storage.display_separator = namespace["separator"]
    # A stat answers whether Sieve runs; the interpreter is imported only then.
    from .script_location import has_scripts
    try:
        if has_scripts(settings, user.home):
            from .sieve_filing import file_by_sieve
            saved = file_by_sieve(storage, source, context, log)
        else:
            from .filing import save_with_fallback
            # One recipient, no Sieve: this is the message's only use, so a Maildir
            # copy may be written as the input is read (no spool file in between).
            source.only_copy = context.only_copy
            saved = [save_with_fallback(storage, source, context.mailbox, context, log)]
    except errors.QuotaExceededError as exc:     # named only when a save failed
        return over_quota(context, source, log, exc)
    log_saved(log, saved, source, envelope, namespace.get("prefix", ""), context.report)
    return saved


def over_quota(context, source, log, exc):
    """A message that does not fit in the user's quota, answered as dovecot-lda
    does: with quota_full_tempfail the QuotaExceededError stands (75; LMTP
    452 4.2.2); otherwise the message is refused for good: QuotaRejectedError
    (77; LMTP 552 5.2.2) with -e, for LMTP (refuse_over_quota: Dovecot's lmtp
    answers 552 and sends nothing) or without a sender, else a DSN (5.2.2) to the
    envelope sender (never to <>) and the delivery is done with nothing saved."""
    log.info(f"save failed to INBOX: {exc}")
    if context.settings["quota_full_tempfail"]:
        raise exc
    log.info(f"rejected: {exc}")
    from .errors import QuotaRejectedError, failure_for
    rejected = QuotaRejectedError(str(exc))
    if context.stderr_reject or context.refuse_over_quota or context.sender is None:
        raise rejected from None
    sender = context.build_sender(log) if context.default_sender else context.sender
    from .send.compose import Original
    sender.dsn(Original.from_message(source), status=failure_for(rejected).dsn_status,
               diagnostic=str(exc))
    return []


def open_log(context):
    """The delivery log of context's recipient, from its settings."""
    from .log import DeliveryLog
    settings = context.settings
    return DeliveryLog(user=context.user.name, log_path=settings["log_path"],
                       info_log_path=settings["info_log_path"],
                       syslog_facility=settings["syslog_facility"],
                       deliver_log_format=settings["deliver_log_format"],
                       home=context.user.home, clock=context.clock,
                       tag=context.log_tag)


def log_saved(log, saved, message, envelope, prefix, report):
    """Log each saved copy. The message is saved: a log that fails now is reported
    (report) but does not fail the delivery, or the MTA would deliver it twice."""
    try:
        for result in saved:
            for warning in getattr(result, "warnings", None) or ():
                log.warning(warning)
            shown = result.mailbox if result.mailbox == "INBOX" else prefix + result.mailbox
            log.delivered(_log_values(message, envelope, result), f"saved mail to {shown}")
        if not saved:
            # A Sieve reject says so (actions.Rejected), a discard this.
            log.delivered(_log_values(message, envelope, None),
                          getattr(saved, "outcome", "discarded by sieve"))
    except errors.LogError as exc:      # named only when logging failed
        report(f"message delivered, but logging it failed: {exc}")


def outgoing_mail(settings, envelope, log, duplicates, *, transport=None, clock=None):
    """The delivery's sender for Sieve's outgoing mail (send/outgoing.py); the
    send package is imported only when a script actually sends."""
    from .send.outgoing import OutgoingMail
    if transport is None:
        from .send.transport import make_transport
        transport = make_transport(settings, helo=settings["hostname"] or None)
    hostname = settings["hostname"] or os.uname().nodename
    final = envelope["to"] or ""
    return OutgoingMail(settings, log=log, transport=transport, duplicates=duplicates,
                        clock=clock or time.time, hostname=hostname,
                        envelope=envelope,
                        user_address=final if "@" in final else f"{final}@{hostname}")


def _log_values(message, envelope, result):
    if result is None:
        return {"msgid": message.get("Message-ID", ""),
                "subject": message.get("Subject", ""), "from": message.get("From", ""),
                "from_envelope": envelope["from"], "to_envelope": envelope["to"]}
    return {
        "msgid": message.get("Message-ID", ""),
        "subject": message.get("Subject", ""),
        "from": message.get("From", ""),
        "from_envelope": envelope["from"],
        "to_envelope": envelope["to"],
        "size": str(result.size),
        "vsize": lambda: str(result.vsize),     # counted only if the log shows it
        "mailbox": result.mailbox,
        "uid": "" if result.uid is None else str(result.uid),
    }


def _report_to_stderr(text):
    """The default report(): one line on stderr."""
    import sys
    try:
        sys.stderr.write(" ".join(text.split()) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass

"""The LMTP server's side of the delivery core: verify a recipient, file a message.

    backend = Backend(load_base_settings(path, []), hostname="mx.example.org")
    verdict = backend.verify("bob@example.org")     # at RCPT: a protocol.Verdict
    replies = backend.deliver(transaction, peer)    # after the content: one per rcpt

verify() resolves the recipient through the userdb exactly as the pipe does
(recipient.resolve: detail stripped, name normalised, userdb fields and settings),
so RCPT is the moment an unknown user is refused (550 5.1.1, what Postfix's
reject_unverified_recipient asks for) and a userdb outage is 451 4.3.0. The
resolved Recipient travels with the transaction as its token; deliver() files the
one spooled message (the transaction's sink, a message.Spool, written once while the
content arrived) for each recipient through deliver.deliver() -- the server runs the
recipients side by side in its pool (begin, deliver_one per recipient, end) --
each with its own settings copy, and answers each with its own reply: 250 only when
the core returned, i.e. the copy is saved and, unless mail_fsync=never, fsynced with
its directory (the storages' commit) -- "250 means on disk".

Per recipient, as Dovecot's lmtp: Return-Path (the envelope sender), Delivered-To
(only in a transaction with one recipient, lmtp_hdr_delivery_address: "final" the
RCPT address, "original" the RCPT's ORCPT address and no Delivered-To without one,
"none" none), and one Received line (with "for <rcpt>" only for one recipient, the
ORCPT address under "original" when there is one); lmtp_save_to_detail_mailbox
files user+detail@domain into the mailbox "detail"; lmtp_user_concurrency_limit
refuses a recipient at RCPT (451 4.3.0) while that many deliveries to the user run.

Errors: every failure becomes that recipient's reply through errors.failure_for (the
one table: code, enhanced status); a bug is 451 4.3.0, never a bounce; nothing here
raises to the server.

Security: this process writes only for users whose uid is its own (single-uid,
"vmail" sites). Any other user is refused at RCPT with 451 4.3.0 naming
mailslot-relay, unless lmtp_relay_path is set: then that recipient is delivered by
the setuid relay, which checks its own policy (relayed.py; multi-uid sites, see
mailslot-lmtpd(8)). Addresses are the sender's
data: they are userdb keys and header values (message.header_line strips control
characters), never paths; a detail mailbox name passes filing.mailbox_components
like any -m name.
"""

import os
import threading
import time

from .protocol import Verdict


class Backend:
    """Recipient checks and deliveries for one settings generation (SIGHUP makes a
    new Backend; transactions under way finish with the one they started with)."""

    def __init__(self, base, *, hostname=None, clock=time.time, config_path=None):
        self.base = base
        self.config_path = config_path
        self.relay = base["lmtp_relay_path"]
        self.hostname = hostname or base["hostname"] or os.uname().nodename
        self.clock = clock
        self.concurrency = base["lmtp_user_concurrency_limit"]
        self._active = {}
        self._lock = threading.Lock()
        # With lmtp_processes above 1, the server sets the slots all workers share
        # (slots.UserSlots); None: this process's own count is the whole truth.
        self.slots = None

    # -- RCPT ---------------------------------------------------------------------------

    def verify(self, address):
        """A Verdict for RCPT TO:<address>; the token is the resolved Recipient."""
        from ..errors import MailslotError, UserUnknownError
        from ..recipient import resolve
        try:
            # With a relay, any valid uid may be a recipient (the relay writes as it).
            rcpt = resolve(self.base, address,
                           check_user=None if self.relay else _check_our_uid)
        except UserUnknownError as exc:
            return Verdict(False, f"550 5.1.1 <{address}> {_text(exc)}")
        except MailslotError as exc:
            return Verdict(False, _failure_reply(address, exc))
        except Exception as exc:     # a bug: the MTA tries again later
            return Verdict(False, f"451 4.3.0 <{address}> Internal error: "
                                  f"{type(exc).__name__}")
        if self.concurrency and self._full(rcpt.user.name):
            return Verdict(False, f"451 4.3.0 <{address}> Too many concurrent deliveries "
                                  "for user")
        refused = self._over_quota(rcpt, address)
        if refused:
            return Verdict(False, refused)
        return Verdict(True, "250 2.1.5 OK", rcpt)

    def _over_quota(self, rcpt, address):
        """lmtp_rcpt_check_quota: the reply refusing a user who is already over quota
        (Dovecot's check with a size of 0), or None. Only for users this process
        writes for (another uid's maildirsize is the relay's business); a quota that
        cannot be read refuses nothing here: the delivery will decide."""
        settings = rcpt.settings
        if not settings["lmtp_rcpt_check_quota"] or rcpt.user.uid != os.getuid():
            return None
        from ..errors import MailslotError, QuotaExceededError
        from ..storage import open_storage
        from ..storage.quota import open_quota
        try:
            storage = open_storage(settings["mail_location"], user=rcpt.user.name,
                                   home=rcpt.user.home, hostname=os.uname().nodename,
                                   mail_fsync=settings["mail_fsync"], settings=settings,
                                   clock=self.clock)
            quota = open_quota(storage, settings, clock=self.clock)
            quota.check("INBOX", quota.usage(), 0)
        except QuotaExceededError as exc:
            code = "452 4.2.2" if settings["quota_full_tempfail"] else "552 5.2.2"
            return f"{code} <{address}> {_text(exc)}"
        except (MailslotError, OSError):
            return None
        return None

    # -- after the content ------------------------------------------------------------

    def deliver(self, tx, peer=None):
        """File tx's message for each of its recipients, one after another; return
        one reply each. (The server runs the recipients side by side instead:
        begin(), deliver_one() for each in its pool, end().)"""
        job = self.begin(tx, peer)
        try:
            return [self.deliver_one(job, i) for i in range(len(tx.recipients))]
        finally:
            self.end(job)

    def begin(self, tx, peer=None):
        """What every recipient's delivery of tx shares: the message read from the
        spool (its header only; the body stays in the spool) and the Received line."""
        from ..message import Message
        single = len(tx.recipients) == 1
        return _Job(tx, Message.from_spool(tx.sink), self._received(tx, peer, single),
                    single)

    def deliver_one(self, job, index):
        """Deliver job's message to its index-th recipient; return that reply.
        Safe to run for several recipients of one job at once (each has its own
        settings and view of the shared, never changed, message)."""
        address, rcpt = job.tx.recipients[index]
        originals = job.tx.originals
        original = originals[index] if index < len(originals) else None
        from .isolated import NeedsOwnProcess
        try:
            return self._deliver_one(job.tx, job.message, address, rcpt, job.received,
                                     job.single, original)
        except NeedsOwnProcess:
            # The script matches with :regex, which only a main thread can bound in
            # time: the whole delivery again, in a child (isolated.py).
            from .isolated import deliver_isolated
            name = rcpt.user.name
            slot = self._enter(name)
            try:
                return deliver_isolated(self, job, index)
            finally:
                self._leave(name, slot)

    def end(self, job):
        job.message.close()

    def _deliver_one(self, tx, message, address, rcpt, received, single, original=None):
        from ..deliver import DeliveryContext, deliver
        from ..errors import MailslotError
        from ..message import header_line
        settings = rcpt.settings
        lines = [header_line("Return-Path", f"<{tx.sender}>")]
        shown = _delivery_address(settings["lmtp_hdr_delivery_address"], address, original)
        if single and shown:
            lines.append(header_line("Delivered-To", shown))
        lines.append(received)
        mailbox = None
        if settings["lmtp_save_to_detail_mailbox"]:
            mailbox = _detail(address, settings["recipient_delimiter"])
        envelope = {"from": tx.sender, "to": address, "orig_to": original or address}
        context = DeliveryContext(settings, rcpt.user, envelope, mailbox=mailbox,
                                  extra=rcpt.extra, clock=self.clock,
                                  report=_report, refuse_over_quota=True)
        name = rcpt.user.name
        slot = self._enter(name)
        try:
            if rcpt.user.uid != os.getuid():
                # Not ours to write: the relay delivers as the user (multi-uid sites).
                from .relayed import deliver_through_relay
                return deliver_through_relay(self.relay, self.config_path, lines,
                                             message, address, tx.sender, mailbox,
                                             settings=settings)
            deliver(context, _WithLines(message, lines))
        except MailslotError as exc:
            return _failure_reply(address, exc)
        except Exception as exc:     # a bug: never a bounce, never a lost message
            _report(f"internal error delivering to {address}: "
                    f"{type(exc).__name__}: {exc}")
            return f"451 4.3.0 <{address}> Internal error: {type(exc).__name__}"
        finally:
            self._leave(name, slot)
        return f"250 2.0.0 <{address}> Saved"

    def _received(self, tx, peer, single):
        """Dovecot's Received line: from the LHLO name (and the TCP peer's address),
        by us with LMTP, the transaction's id, the envelope sender, "for" only with one recipient."""
        from ..message import header_line
        lhlo, ip = peer if peer else ("unknown", None)
        lines = [f"from {lhlo}" + (f" ([{ip}])" if ip else ""),
                 f"by {self.hostname} with LMTP", f"id {transaction_id(tx)}",
                 f"(envelope-from <{tx.sender}>)"]
        if single and self.base["lmtp_hdr_delivery_address"] != "none":
            # "original" names the ORCPT address when the MTA sent one (Dovecot's
            # lmtp does the same); the final address otherwise.
            originals = tx.originals
            shown = (originals[0] if originals else None) \
                if self.base["lmtp_hdr_delivery_address"] == "original" else None
            lines.append(f"for <{shown or tx.recipients[0][0]}>")
        lines[-1] += "; " + _rfc5322_date(self.clock())
        # Each piece made a line by header_line (control characters removed), then
        # folded with a TAB as Dovecot does.
        first = header_line("Received", lines[0])
        return first + b"".join(b"\t" + header_line("X", text)[3:] for text in lines[1:])

    # -- lmtp_user_concurrency_limit ---------------------------------------------------

    def _full(self, name):
        if self.slots is not None:
            return self.slots.full(name, self.concurrency)
        with self._lock:
            return self._active.get(name, 0) >= self.concurrency

    def _enter(self, name):
        """Count a delivery to name; the slot token to give _leave (None in-process).
        RCPT checked the limit: a delivery is never held back here (a race between
        two RCPTs may let one more through, as with Dovecot's own count)."""
        if self.slots is not None:
            return self.slots.take(name, self.concurrency) if self.concurrency else None
        with self._lock:
            self._active[name] = self._active.get(name, 0) + 1
        return None

    def _leave(self, name, slot=None):
        if self.slots is not None:
            self.slots.free(slot)
            return
        with self._lock:
            left = self._active[name] - 1
            if left:
                self._active[name] = left
            else:
                del self._active[name]


class _Job:
    __slots__ = ("tx", "message", "received", "single")

    def __init__(self, tx, message, received, single):
        self.tx, self.message, self.received, self.single = tx, message, received, single


class _WithLines:
    """The shared message with this recipient's LMTP header lines in front of the
    ones the core adds: the core's view() takes them all; nothing is copied."""

    def __init__(self, message, lines):
        self.message, self.lines = message, lines

    def view(self, lines=(), envelope_sender=None):
        return self.message.view(self.lines + list(lines), envelope_sender)

    def __getattr__(self, name):
        return getattr(self.message, name)


def _delivery_address(mode, address, original):
    """The Delivered-To address for lmtp_hdr_delivery_address, or None for none:
    "final" the RCPT address; "original" the ORCPT address (RFC 3461) and none
    when the MTA sent no ORCPT of type rfc822 -- what Dovecot 2.3's lmtp writes
    (checked against it: no ORCPT, no Delivered-To)."""
    if mode == "final":
        return address
    if mode == "original":
        return original
    return None


def transaction_id(tx):
    """A transaction's id, made once: 22 characters of base64 from 16 random bytes,
    the shape of Dovecot's (its session GUID)."""
    if tx.id is None:
        import base64
        tx.id = base64.b64encode(os.urandom(16)).decode("ascii").rstrip("=")
    return tx.id


def _check_our_uid(user):
    """In-process delivery writes as this process: the user must be our uid."""
    if user.uid != os.getuid():
        from ..errors import PrivilegeError
        raise PrivilegeError(f"user {user.name} has uid {user.uid}, but mailslot-lmtpd "
                             f"runs as uid {os.getuid()}: deliver for other users "
                             "through mailslot-relay")


def _failure_reply(address, exc):
    from ..errors import failure_for
    row = failure_for(exc)
    return f"{row.lmtp_code} {row.dsn_status} <{address}> {_text(exc)}"


def _text(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return "".join(ch if " " <= ch != "\x7f" else "?" for ch in text)[:400]


def _detail(address, delimiters):
    """The detail of user+detail@domain (recipient_delimiter), or None."""
    if not delimiters:
        return None
    local = address.rpartition("@")[0] if "@" in address else address
    cuts = [i for i in (local.find(d) for d in delimiters) if i > 0]
    if not cuts:
        return None
    return local[min(cuts) + 1:] or None


_last_date = (None, None)
# RFC 5322 3.3's names, whatever the locale (tm_wday 0 is Monday).
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")


def _rfc5322_date(when):
    """RFC 5322 date of when (local time), made once per second: Received lines of
    messages in the same second share it (formatting cost a few % of the CPU).
    Written here rather than by email.utils.formatdate (the same text): importing
    email.utils cost every worker process 1.5 MiB (docs/benchmarks.md, "LMTP memory")."""
    global _last_date
    second = int(when)
    cached_second, text = _last_date
    if cached_second != second:
        import time
        t = time.localtime(second)
        sign, offset = ("-", -t.tm_gmtoff) if t.tm_gmtoff < 0 else ("+", t.tm_gmtoff)
        offset //= 60
        text = (f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} "
                f"{t.tm_year:04d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
                f"{sign}{offset // 60:02d}{offset % 60:02d}")
        _last_date = (second, text)     # one tuple: threads see old or new, whole
    return text


def _report(text):
    import sys
    line = "".join(ch if " " <= ch != "\x7f" else "?" for ch in " ".join(text.split()))
    try:
        sys.stderr.write(f"mailslot-lmtpd: {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass

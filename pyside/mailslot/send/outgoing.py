"""A delivery's outgoing mail: the rules for what is sent, and what a failure means.

    out = OutgoingMail(settings, log=log, transport=..., duplicates=db,
                       clock=time.time, hostname=..., envelope=..., user_address=...)
    out.check_transport()           # before saving: SendError if it cannot work
    out.redirect_loop(original, address)   # before saving: why not to forward
    out.reject(original, reason)    # -> True sent / False not to be sent
    out.redirect(original, spool, address)
    out.vacation(original, action)
    out.notify(original, action)
    out.dsn(original, status="5.2.2", diagnostic=...)   # over quota (issue 16)

The rules (RFC 3834, 5230, 5429, 5436 and Pigeonhole's):
- a rejection goes to the envelope sender, never to <> and never in answer to a
  message whose Auto-Submitted is other than "no" (those are discarded, logged);
- a redirect is not sent again to the same target for the same Message-ID within
  sieve_redirect_duplicate_period (a retried delivery does not forward twice),
  and not at all when it would loop (redirect.loop_reason): the message is kept;
  it is recorded after the send, the lock held over it (duplicates.hold): a
  crash in between forwards once more on the retry, never loses the message;
- a vacation reply goes out only when Sieve's decision says so (vacation.decide)
  and the (handle, sender) pair was not answered within the period: the duplicate
  database claims the pair before sending, and forgets it if the send fails;
- a notification is not sent for a message that is itself Auto-Submitted, and
  one about a message from <> is sent from <>.

Failures: every method raises SendError when the transport fails. The caller
(actions.perform) turns it into a temporary failure only while no copy of the
message is saved; after a save it is logged and the saved copy stands.
A duplicate database that cannot be used is logged: the vacation reply is then
not sent (never a flood), a redirect is sent without the check.

Security: addresses come from the envelope and the script and are passed to the
transport as argv items or SMTP parameters after its checks, never through a shell.
"""

import time

from ..errors import SendError
from . import compose
from .postmaster import InvalidPostmaster, postmaster
from .redirect import envelope_sender, loop_reason, redirect_chunks
from .transport import check_address

# RFC 3834 / Pigeonhole: Redirect memory, 12 h by default.
DEFAULT_REDIRECT_DUPLICATE_PERIOD = 12 * 3600


def _unusable(address):
    """Why address cannot be sent to (a reply to it would defer forever), or None."""
    try:
        check_address(address)
    except SendError as exc:
        return str(exc)
    return None


def _is_auto_submitted(original):
    return any(v.strip().lower().split(";")[0].strip() != "no"
               for v in original.values("auto-submitted"))


class OutgoingMail:
    """One delivery's sender. settings: the recipient's (rejection_*, sieve_*,
    postmaster_address); transport: send/transport.py; duplicates: the user's
    DuplicateDB or None (no memory: sieve-test); clock: time.time-like; envelope:
    {"from", "to", "orig_to"} strings ("" for <>); user_address: the recipient's
    address (X-Sieve-Redirected-From, owner-email, loops); dry_run: keep whole
    forwarded copies in .sent (sieve-test shows them)."""

    def __init__(self, settings, *, log, transport, duplicates=None, clock=time.time,
                 hostname, envelope, user_address, dry_run=False):
        self.settings = settings
        self.log = log
        self.transport = transport
        self.duplicates = duplicates
        self.clock = clock
        self.hostname = hostname
        self.envelope = envelope        # {"from", "to", "orig_to"} as strings
        self.user_address = user_address
        self.dry_run = dry_run
        self.sent = []                  # Outgoing messages handed to the transport

    # -- before saving ------------------------------------------------------------------

    def check_transport(self):
        """Raise SendError now when the transport cannot work (no_new_privs ...)."""
        self.transport.check()

    def redirect_loop(self, original, address):
        # Our own X-Sieve-Redirected-From is sieve_user_email, the user's address or
        # the final recipient, whichever the copy was sent with: each means a loop.
        return loop_reason(original, address,
                           (self.user_address, self.envelope.get("to") or "",
                            self.settings.get("sieve_user_email") or ""))

    # -- sending ------------------------------------------------------------------------

    def _postmaster(self):
        """(display name, address) of postmaster_address; SendError when it is not
        one mailbox (send/postmaster.py): nothing goes out from an invalid
        address such as "postmaster@" (postmaster@%d for a user without a domain)."""
        try:
            return postmaster(self.settings, self.hostname)
        except InvalidPostmaster as exc:
            raise SendError(str(exc)) from None

    def _forget(self, key):
        """Forget a duplicate mark claimed before a send that failed, so a retried
        delivery sends again; a database that cannot forget is logged (the mark then
        suppresses the retry's send: never a second copy)."""
        if key is None or self.duplicates is None:
            return
        try:
            self.duplicates.forget(key)
        except Exception as exc:
            self.log.warning(f"sieve: duplicate database: {exc}")

    def _send(self, sender, recipients, chunks, describe):
        try:
            self.transport.send(sender, recipients, chunks)
        except SendError:
            raise
        except Exception as exc:
            # Any failure to send is a SendError: after a save it is logged and
            # the saved copy stands (actions.perform). Another exception would
            # end the delivery with 75 after the save, and the MTA's retry would
            # file the message again (and fail again) for ever.
            raise SendError(f"{describe}: {type(exc).__name__}: {exc}") from None

    def _send_outgoing(self, out):
        self._send(out.sender, out.recipients, [out.data], out.describe)
        self.sent.append(out)

    def reject(self, original, reason):
        sender = self.envelope.get("from") or ""
        if not sender or sender == "<>":
            self.log.info("sieve: reject action: not sending rejection to <>")
            return False
        if _is_auto_submitted(original):
            self.log.info(f"sieve: reject action: not sending rejection for an "
                          f"auto-submitted message from <{sender}>")
            return False
        if _unusable(sender):
            self.log.info(f"sieve: reject action: not sending rejection: "
                          f"{_unusable(sender)}")
            return False
        name, address = self._postmaster()
        out = compose.rejection(
            original, reason=reason, final_rcpt=self.envelope.get("to") or "",
            orig_rcpt=self.envelope.get("orig_to") or "", sender=sender,
            hostname=self.hostname, postmaster=address, postmaster_name=name,
            now=self.clock(),
            subject_template=self.settings.get("rejection_subject"),
            reason_template=self.settings.get("rejection_reason"))
        self._send_outgoing(out)
        self.log.info(f"sieve: reject action: rejected message from <{sender}> (reject)")
        return True

    def dsn(self, original, *, status="5.2.2", diagnostic="Quota exceeded (mailbox "
            "for user is full)"):
        """A failure DSN to the envelope sender (over quota with quota_full_tempfail
        off: the quota issue calls this); never to <>."""
        sender = self.envelope.get("from") or ""
        if not sender or sender == "<>":
            self.log.info(f"not sending a DSN ({status}) to <>: discarded")
            return False
        try:
            name, address = self._postmaster()
        except SendError as exc:
            # As dovecot-lda: no DSN from an unusable address; nothing is saved,
            # so the delivery fails for now (75) and the MTA keeps the message.
            self.log.error(f"not sending a DSN ({status}): {exc}")
            raise SendError(f"can't send the DSN ({status}): {exc}") from None
        out = compose.dsn(original, status=status, diagnostic=diagnostic,
                          final_rcpt=self.envelope.get("to") or "",
                          orig_rcpt=self.envelope.get("orig_to") or "", sender=sender,
                          hostname=self.hostname, postmaster=address,
                          postmaster_name=name, now=self.clock(),
                          subject_template=self.settings.get("rejection_subject"),
                          reason_template=self.settings.get("rejection_reason"))
        self._send_outgoing(out)
        self.log.info(f"sent a DSN ({status}) to <{sender}>")
        return True

    def redirect(self, original, spool, address):
        """Forward the spooled message to address; False when suppressed."""
        msgid = original.first("message-id")
        period = self.settings.get("sieve_redirect_duplicate_period") \
            or DEFAULT_REDIRECT_DUPLICATE_PERIOD
        held = None
        if msgid and self.duplicates is not None:
            key = "redirect\0%s\0%s\0%s" % (self.user_address, msgid, address.lower())
            try:
                # The lock is held over the send (two deliveries of one message at
                # once forward it once) and the forward recorded after the MTA has
                # it: a crash before the record costs one extra copy on the retry,
                # never the message (the forward may be its only delivery).
                held = self.duplicates.hold(key, period)
            except Exception as exc:
                self.log.warning(f"sieve: duplicate database: {exc}; forwarding anyway")
            if held is not None and not held.fresh:
                held.release()
                self.log.info(f"sieve: redirect action: discarded duplicate forward "
                              f"to <{address}>")
                return False
        try:
            self._forward(spool, address)
        except BaseException:
            if held is not None:
                held.release()          # not recorded: a retry sends
            raise
        if held is not None:
            try:
                held.record()
            except Exception as exc:
                self.log.warning(f"sieve: duplicate database: {exc}; the forward to "
                                 f"<{address}> is not remembered")
        self.log.info(f"sieve: redirect action: forwarded to <{address}>")
        return True

    def _forward(self, spool, address):
        sender = envelope_sender(
            self.settings.get("sieve_redirect_envelope_from"),
            sender=self.envelope.get("from") or "", recipient=self.envelope.get("to"),
            orig_recipient=self.envelope.get("orig_to"),
            user_email=self.settings.get("sieve_user_email"),
            postmaster=lambda: self._postmaster()[1])
        if sender == "<>":
            sender = ""
        # Pigeonhole's X-Sieve-Redirected-From: sieve_user_email when set, else
        # the recipient's address (redirect_loop knows both as ours).
        chunks = redirect_chunks(spool, self.settings.get("sieve_user_email")
                                 or self.user_address)
        if self.dry_run:
            data = b"".join(chunks)
            self.sent.append(compose.Outgoing(sender, [address], data, "redirect",
                                              f"forward to <{address}>"))
            self._send(sender, [address], [data], f"forward to <{address}>")
        else:
            self._send(sender, [address], chunks, f"forward to <{address}>")
            self.sent.append(compose.Outgoing(sender, [address], b"", "redirect",
                                              f"forward to <{address}>"))

    def vacation(self, original, action):
        if not action.get("send"):
            if action.get("skip_reason"):
                self.log.info("sieve: vacation action: " + action["skip_reason"])
            return False
        to = action["to"]
        if _unusable(to):
            self.log.info(f"sieve: vacation action: no response: {_unusable(to)}")
            return False
        key = "vacation\0%s\0%s\0%s" % (self.user_address, action.get("handle") or "",
                                        to.lower())
        period = int(action.get("period") or action.get("seconds") or 0) or 7 * 86400
        if self.duplicates is not None:
            try:
                if not self.duplicates.claim(key, period):
                    self.log.info(f"sieve: vacation action: discarded duplicate "
                                  f"response to <{to}>")
                    return False
            except Exception as exc:
                self.log.error(f"sieve: vacation action: duplicate database: {exc}; "
                               f"no response sent to <{to}>")
                return False
        out = compose.vacation_reply(
            original, action, action, hostname=self.hostname, now=self.clock(),
            max_subject=int(self.settings.get("sieve_vacation_max_subject_codepoints")
                            or 256))
        try:
            self._send_outgoing(out)
        except SendError:
            self._forget(key)
            raise
        self.log.info(f"sieve: vacation action: sent vacation response to <{to}>")
        return True

    def notify(self, original, action):
        sender = self.envelope.get("from") or ""
        if _is_auto_submitted(original):
            self.log.info(f"sieve: notify action: not sending notification for "
                          f"auto-submitted message from <{sender}>")
            return False
        if not action.get("recipients"):
            return False
        name, address = self._postmaster()
        out = compose.notification(original, action, owner=self.user_address,
                                   postmaster=address, postmaster_name=name,
                                   hostname=self.hostname, now=self.clock())
        setting = self.settings.get("sieve_notify_mailto_envelope_from")
        if setting:
            # Pigeonhole's sieve_notify_mailto_envelope_from: sender, recipient,
            # orig_recipient, user_email, postmaster or <address>.
            out.sender = envelope_sender(
                setting, sender=sender, recipient=self.envelope.get("to"),
                orig_recipient=self.envelope.get("orig_to"),
                user_email=self.settings.get("sieve_user_email"), postmaster=address)
        if not sender or sender == "<>":
            # RFC 5436 2.7 (and Pigeonhole): a notification about a message with
            # the null sender goes out with the null sender, so it cannot bounce
            # into a loop.
            out.sender = ""
        self._send_outgoing(out)
        self.log.info("sieve: notify action: sent " + out.describe)
        return True

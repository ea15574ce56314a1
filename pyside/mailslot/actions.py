"""Carrying out a Sieve result: the local actions into storage, then the mail it sends.

perform(result, ...) files the message as the result says: every store (fileinto)
and keep into its mailbox with its flags, creating a mailbox for :create or when
autocreate allows, then the implicit keep when it still applies. A result whose
status is not "success" keeps the message in the default mailbox (implicit keep),
as Pigeonhole does. A store that fails falls back to INBOX: a message is never
dropped because a folder was missing or broken.

Then the mail the script asked for goes out through the delivery's sender
(send/outgoing.OutgoingMail): redirects, the vacation reply, notifications, or the
rejection when nothing was filed. Saving comes first so that a send that fails
after a copy is saved is only logged (the saved copy stands); a send that fails
while nothing is saved is a temporary failure (SendError, 75), and the duplicate
database keeps the MTA's retry from sending twice what already went out. Before
anything is saved the transport is checked (no_new_privs with sendmail_path is
refused then, not half-way). A redirect that would loop (send/redirect.py) is not
sent and the message is kept instead. Sieve's duplicate marks are recorded when the
run succeeded.

Without a sender (sender=None) nothing is sent: redirect and vacation are logged
and a redirect keeps the message, as before outgoing mail existed.

A reject with nothing filed: with -e (or for ereject) RejectedError, the reason on
stderr and exit 77 (the MTA refuses the message in its own dialogue); otherwise
the rejection report is mailed to the sender (never to <> or for auto-submitted
mail) and the delivery succeeds with nothing saved, as dovecot-lda does.

One copy a mailbox (RFC 5228 2.10.3): a store or keep into a mailbox that already
got a copy in this delivery is merged into it, also when a failed store's implicit
keep lands in INBOX beside a fileinto "INBOX".

Errors: StorageError when not even INBOX can take the message (temporary);
RejectedError for -e and ereject; SendError as above.

Filing follows one set of rules for -m and for Sieve: filing.py (save_to,
save_with_fallback, mailbox_components).

Security: mailbox names come from the user's script; they pass through the same
validation as -m (filing.mailbox_components), so none writes outside the mail root.
"""

from .errors import MailboxNameError, RejectedError, SendError, StorageError
from .filing import mailbox_components, save_to, save_with_fallback

_SENDING = ("redirect", "vacation", "notify", "reject")


def perform(result, storage, message, context, log, *, sender=None, duplicates=None):
    """Carry out result for one recipient; return the SaveResults of the copies
    saved ([] if none).

    context is the delivery's (deliver.DeliveryContext): its settings, the -m
    mailbox, -n/-s/-e. sender: an OutgoingMail, or None (nothing is sent);
    duplicates: the user's DuplicateDB (for Sieve's duplicate marks) or None.
    """
    settings = context.settings
    saved = []
    filed = set()          # the mailboxes (storage components) that have a copy
    keep_anyway = result.status != "success"
    rejection = None
    ereject = False
    sends = []
    original = None
    if not keep_anyway:
        if sender is not None and any(a["type"] in _SENDING and _would_send(a)
                                      for a in result.actions):
            from .send.compose import Original
            original = Original.from_message(message)
            if not any(a["type"] == "reject" for a in result.actions) or \
                    not context.stderr_reject:
                sender.check_transport()   # refused now, before anything is saved
        for action in result.actions:
            kind = action["type"]
            if kind in ("store", "keep"):
                saved_one = _store(action, storage, message, context, log, filed)
                if saved_one is False:
                    keep_anyway = True
                elif saved_one is not None:
                    saved.append(saved_one)
            elif kind in ("reject", "ereject"):
                rejection = action.get("reason") or ""
                ereject = kind == "ereject"
            elif kind == "redirect":
                if sender is None:
                    log.error(f"sieve: redirect to <{action.get('address', '')}> not "
                              "carried out: no outgoing mail; message kept")
                    keep_anyway = keep_anyway or not action.get("copy")
                    continue
                loop = sender.redirect_loop(original, action["address"])
                if loop:
                    log.warning(f"sieve: redirect action: not forwarding to "
                                f"<{action['address']}>: loop ({loop}); message kept")
                    keep_anyway = keep_anyway or not action.get("copy")
                else:
                    sends.append(action)
            elif kind in ("vacation", "notify"):
                if sender is None:
                    if action.get("send", True):
                        log.info(f"sieve: {kind} action not carried out: no outgoing "
                                 "mail")
                else:
                    sends.append(action)
            # discard needs nothing here; duplicate marks are recorded below.
    if result.status != "success":
        # A failed script: only the implicit keep, into the default mailbox.
        kept = save_with_fallback(storage, message, context.mailbox, context, log)
        log.info("Execution of script failed, but implicit keep was successful "
                 f"(saved mail to {kept.mailbox})")
        saved.append(kept)
        return saved
    if result.implicit_keep or keep_anyway:
        kept = _keep_once(storage, message, result.implicit_keep_mailbox or context.mailbox,
                          context, log, tuple(result.implicit_keep_flags or ()), filed)
        if kept is not None:
            saved.append(kept)
    elif rejection is not None and not saved:
        if ereject or context.stderr_reject or sender is None:
            raise RejectedError(rejection or "message rejected")
        sends.append({"type": "reject", "reason": rejection})
    rejection_sent = None
    if sends:
        rejection_sent = _send_all(sends, sender, original, message, saved, settings,
                                   log)
    if duplicates is not None:
        _mark_duplicates(result.actions, duplicates, log)
    if rejection_sent is not None:
        return Rejected(rejection_sent, context.envelope.get("from") or "")
    return saved


class Rejected(list):
    """perform's answer for a message a Sieve reject refused without -e: no copy
    saved (an empty list of SaveResults) and the delivery's log line saying so,
    whether the rejection was mailed (outcome; deliver.log_saved writes it where a
    discard writes "discarded by sieve")."""

    def __init__(self, sent, to):
        super().__init__()
        self.outcome = (f"rejected by sieve: rejection sent to <{to}>" if sent
                        else "rejected by sieve: no rejection sent")


def _would_send(action):
    return action["type"] != "vacation" or action.get("send")


def _send_all(sends, sender, original, message, saved, settings, log):
    """Send in the script's order; a failure defers only while nothing is saved.
    Returns whether the rejection went out (None: the script did not reject)."""
    spool = None
    rejection_sent = None
    try:
        for action in sends:
            kind = action["type"]
            try:
                if kind == "redirect" and action.get("edited_header") is not None:
                    # editheader ran before this redirect: forward that copy.
                    from .message import with_edited_header
                    edited = with_edited_header(message,
                                                action["edited_header"].pieces())
                    if hasattr(edited, "chunks"):
                        sender.redirect(original, edited, action["address"])
                    else:
                        copy = _spool(edited, settings)
                        try:
                            sender.redirect(original, copy, action["address"])
                        finally:
                            copy.close()
                elif kind == "redirect":
                    # Streamed from the delivery's own spool (read from the input
                    # once); a source without one is copied to a temp file first.
                    if hasattr(message, "chunks"):
                        sender.redirect(original, message, action["address"])
                    else:
                        if spool is None:
                            spool = _spool(message, settings)
                        sender.redirect(original, spool, action["address"])
                elif kind == "vacation":
                    sender.vacation(original, action)
                elif kind == "notify":
                    sender.notify(original, action)
                elif kind == "reject":
                    rejection_sent = bool(sender.reject(original, action["reason"]))
            except SendError as exc:
                if not saved:
                    raise
                log.error(f"sieve: {kind} action: {exc} (the message was saved)")
    finally:
        if spool is not None:
            spool.close()
    return rejection_sent


def _spool(message, settings):
    """A private copy of the message to stream from (the input is read once)."""
    import tempfile
    spool = tempfile.TemporaryFile(dir=settings.get("mail_temp_dir") or None)
    message.write_to(spool.fileno())
    return spool


def _mark_duplicates(actions, duplicates, log):
    for action in actions:
        if action["type"] == "duplicate_mark":
            try:
                duplicates.mark(bytes.fromhex(action["key"]), action["period"])
            except Exception as exc:
                log.warning(f"sieve: duplicate database: {exc}")


def _store(action, storage, message, context, log, filed):
    """Save one store/keep action: its SaveResult, None when the mailbox already
    has a copy (merged), False when it failed (the caller keeps instead)."""
    name_text = action.get("mailbox") or "INBOX"
    source = message
    if action.get("edited_header") is not None:
        from .message import with_edited_header
        source = with_edited_header(message, action["edited_header"].pieces())
    try:
        name = mailbox_components(name_text, context.settings)
        if _key(name) in filed:
            return None
        saved = save_to(storage, source, name, context,
                        flags=tuple(action.get("flags") or ()),
                        force_create=bool(action.get("create")))
    except (MailboxNameError, StorageError) as exc:
        log.error(f"sieve: failed to store into mailbox {name_text!r}: {exc}")
        return False
    filed.add(_key(name))
    return saved


_INBOX = ("INBOX",)


def _key(name):
    """A mailbox's identity for merging: INBOX is case-insensitive."""
    name = tuple(name)
    return _INBOX if len(name) == 1 and name[0].upper() == "INBOX" else name


def _keep_once(storage, message, target, context, log, flags, filed):
    """The implicit keep, unless its mailbox already has a copy. With a copy in
    INBOX already, a failing keep does not fall back there a second time."""
    try:
        name = _key(mailbox_components(target or "INBOX", context.settings))
    except MailboxNameError:
        name = _INBOX        # save_with_fallback falls back to INBOX for an invalid name
    if name in filed:
        return None
    if _INBOX not in filed:
        return save_with_fallback(storage, message, target, context, log, flags=flags)
    try:
        return save_to(storage, message, name, context, flags=flags)
    except StorageError as exc:
        log.error(f"Failed to save mail to mailbox {target}: {exc}; "
                  "a copy is already in INBOX")
        return None

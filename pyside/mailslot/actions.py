"""Carrying out a Sieve result: the local actions into storage, the rest logged.

perform(result, ...) files the message as the result says: every store (fileinto)
and keep into its mailbox with its flags, creating a mailbox for :create or when
autocreate allows, then the implicit keep when it still applies. A result whose
status is not "success" keeps the message in the default mailbox (implicit keep),
as Pigeonhole does. A store that fails falls back to INBOX: a message is never
dropped because a folder was missing or broken.

Sending is a later issue: redirect, vacation and notify are decided by the script
and logged here, not sent. So that nothing is lost, a redirect that would have
cancelled the implicit keep keeps the message instead. A reject with nothing filed
raises RejectedError: with -e the reason goes to stderr with exit 77; without -e
too, for now, so that the MTA returns the reason to the sender (dovecot-lda would
send the rejection itself).

Errors: StorageError when not even INBOX can take the message (temporary);
RejectedError for a reject.

Security: mailbox names come from the user's script; they pass through the same
validation as -m (deliver.mailbox_components), so none writes outside the mail root.
"""

from .errors import MailboxNameError, RejectedError, StorageError


def perform(result, storage, message, *, settings, opts, log, save_to, keep,
            components):
    """Carry out result; return the SaveResults of the copies saved ([] if none).

    The delivery passes its own steps in, so filing follows one set of rules:
    save_to (save into mailbox components, creating when allowed), keep (save into
    a mailbox name with the fallback to INBOX) and components (a name in the user's
    namespace -> validated storage components).
    """
    saved = []
    keep_anyway = result.status != "success"
    rejection = None
    if not keep_anyway:
        for action in result.actions:
            kind = action["type"]
            if kind in ("store", "keep"):
                saved_one = _store(action, storage, message, settings, opts, log,
                                   save_to, components)
                if saved_one is None:
                    keep_anyway = True
                else:
                    saved.append(saved_one)
            elif kind in ("reject", "ereject"):
                rejection = action.get("reason", "")
            elif kind == "redirect":
                log.error(f"sieve: redirect to <{action.get('address', '')}> not carried "
                          "out: sending mail is not implemented yet; message kept")
                if not action.get("copy"):
                    keep_anyway = True
            elif kind == "vacation":
                if action.get("send"):
                    log.info(f"sieve: vacation response to <{action.get('to', '')}> "
                             "not sent: sending mail is not implemented yet")
            elif kind == "notify":
                log.info(f"sieve: notification by {action.get('method', '')} not sent: "
                         "sending mail is not implemented yet")
            # discard and duplicate_mark need nothing here.
    if result.status != "success":
        # A failed script: only the implicit keep, into the default mailbox.
        kept = keep(storage, message, opts.mailbox, settings, opts, log)
        log.info("Execution of script failed, but implicit keep was successful "
                 f"(saved mail to {kept.mailbox})")
        saved.append(kept)
    elif result.implicit_keep or keep_anyway:
        saved.append(keep(storage, message, result.implicit_keep_mailbox or opts.mailbox,
                          settings, opts, log,
                          flags=tuple(result.implicit_keep_flags or ())))
    elif rejection is not None and not saved:
        raise RejectedError(rejection or "message rejected")
    return saved


def _store(action, storage, message, settings, opts, log, save_to, components):
    """Save one store/keep action; None when it failed (the caller keeps instead)."""
    name_text = action.get("mailbox") or "INBOX"
    source = message
    if action.get("header_fields"):
        from .message import with_header_fields
        source = with_header_fields(message, action["header_fields"])
    try:
        name = components(name_text, settings)
        return save_to(storage, source, name, settings, opts,
                       flags=tuple(action.get("flags") or ()),
                       force_create=bool(action.get("create")))
    except (MailboxNameError, StorageError) as exc:
        log.error(f"sieve: failed to store into mailbox {name_text!r}: {exc}")
        return None

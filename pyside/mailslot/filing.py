"""Filing one copy of a message into one mailbox, with dovecot-lda's rules.

    save_to(storage, source, name, context)            # components, created if allowed
    save_with_fallback(storage, source, target, context, log)   # a name, else INBOX
    mailbox_components("Lists/abc", settings)           # -> ("Lists", "abc")

save_to creates a missing mailbox when lda_mailbox_autocreate is set and -n was not
given (or always, for Sieve's fileinto :create), and subscribes a new one with -s or
lda_mailbox_autosubscribe; INBOX always exists for the user. save_with_fallback saves
into the -m mailbox (or Sieve's keep target) and falls back to INBOX when that name
is invalid or the save fails, as dovecot-lda does; only INBOX failing too is a
failure. With quota settings, save_to checks the quota before each save (that
mailbox's rule) and counts the copy after it (storage/quota.py): a mailbox over
its quota is a QuotaExceededError, a StorageError, so the fallback to INBOX
applies as in dovecot-lda. After a Maildir save the source remembers the new file (stored_path), so
further copies of the same source are hard links.

context is the delivery's (deliver.DeliveryContext): its settings, and the -n/-s
choices (no_create, subscribe).

Errors: MailboxNotFoundError for a missing mailbox that may not be created;
StorageError (temporary) when not even INBOX takes the message
(QuotaExceededError when INBOX is over quota).

Security: every name a user or a script gives passes mailbox_components (the
namespace's rules, then mailbox_name.split_mailbox_name's validation) before it
reaches a storage, so none writes outside the mail root.
"""

from .errors import MailboxNameError, MailboxNotFoundError, StorageError

INBOX = ("INBOX",)


def save_with_fallback(storage, source, target, context, log, *, flags=()):
    """Save into target (a -m name or Sieve's keep), falling back to INBOX as
    dovecot-lda does."""
    if target is not None:
        try:
            name = mailbox_components(target, context.settings)
        except MailboxNameError as exc:
            log.error(f"Invalid mailbox name {target!r}: {exc}; saving to INBOX")
            name = INBOX
        if name != INBOX:
            try:
                return save_to(storage, source, name, context, flags=flags)
            except StorageError as exc:
                if getattr(source, "input_gone", False) and \
                        getattr(source, "stored_path", None) is None:
                    raise   # the input went into the failed copy: defer (75)
                # The message is in the delivery's spool: INBOX can still take it.
                log.error(f"Failed to save mail to mailbox {target}: {exc}; "
                          "saving to INBOX instead")
    return save_to(storage, source, INBOX, context, flags=flags)


def mailbox_components(text, settings):
    """Turn a -m name in the user's namespace into storage components."""
    from .mailbox_name import split_mailbox_name
    ns = settings["namespace"]["inbox"]
    prefix = ns.get("prefix", "")
    separator = ns.get("separator", "") or "."
    # Delivery to the namespace prefix itself means INBOX (dovecot-lda v1.1+).
    if prefix and text in (prefix, prefix.rstrip(separator)):
        return INBOX
    return split_mailbox_name(text, prefix=prefix, separator=separator)


def save_to(storage, source, name, context, *, flags=(), force_create=False):
    """Save into mailbox name, creating (and subscribing) it when allowed.

    force_create is Sieve's fileinto :create, which creates the mailbox whatever
    lda_mailbox_autocreate and -n say.
    """
    settings = context.settings
    autocreate = force_create or (settings["lda_mailbox_autocreate"]
                                  and not context.no_create)
    if name != INBOX and not storage.mailbox_exists(name):
        if not autocreate:
            raise MailboxNotFoundError(f"Mailbox doesn't exist: {'/'.join(name)}")
        storage.create_mailbox(name)
        if context.subscribe or settings["lda_mailbox_autosubscribe"]:
            storage.subscribe(name)
    elif name == INBOX and not storage.mailbox_exists(name):
        storage.create_mailbox(name)   # INBOX always exists for the user
    quota = _quota(storage, context)
    if quota is None:
        result = storage.save(name, source, flags=flags)
    else:
        # Checked against this mailbox's rule before the save, counted after it.
        result = quota.save(storage, name, source, flags=flags)
    if getattr(source, "stored_path", "") is None:
        source.stored_path = result.path
    return result


def _quota(storage, context):
    """The recipient's quota (storage/quota.py), opened once per storage; None
    without quota settings, and then nothing of quota is imported."""
    from .config import QUOTA_SETTINGS
    settings = context.settings
    if not any(settings.get(key) for key in QUOTA_SETTINGS):
        return None
    quota = getattr(storage, "quota", None)
    if quota is None:
        from .storage.quota import open_quota
        quota = storage.quota = open_quota(storage, settings, clock=context.clock)
    return quota

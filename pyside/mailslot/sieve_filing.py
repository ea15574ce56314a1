"""Filing by the user's Sieve scripts: run them, then carry out what they decided.

    saved = file_by_sieve(storage, source, context, log)     # -> [SaveResult]

deliver.py calls this when script_location.has_scripts() found a script; a
delivery without one never imports this module, the interpreter (sieve/) or the
actions (actions.py). The scripts run over the recipient's view of the message
with the context's envelope, clock and -m mailbox (keep's default); the result's
actions are carried out by actions.perform (fileinto, keep, redirect, vacation,
reject ...). Outgoing mail gets the context's sender, built from the settings on
first use (a script that sends nothing imports nothing of send/).

Errors: a postmaster_address that is not one mailbox (postmaster@%d for a user
without a domain expands to "postmaster@") stops the scripts before they run, as
in dovecot-lda: logged as an error and the message kept (the -m mailbox, else
INBOX). An internal error of the interpreter is logged and the message is kept
(implicit keep into the -m mailbox or INBOX, as Pigeonhole falls back): a bug in
Sieve must neither lose nor defer mail. A reject is RejectedError (logged here);
the storage's errors are perform's.

Security: the scripts are the user's and the administrator's; mailbox names they
give pass filing.mailbox_components, addresses they redirect to are checked by
send/. The duplicate database is the user's, under their home.
"""


def file_by_sieve(storage, source, context, log):
    """Run the user's Sieve scripts and carry out the result; return the saves."""
    from . import sieve
    from .actions import perform
    from .errors import MailboxNameError, RejectedError
    from .filing import mailbox_components, save_with_fallback
    settings, user = context.settings, context.user

    def exists(name):
        try:
            return storage.mailbox_exists(mailbox_components(name, settings))
        except MailboxNameError:
            return False

    def admin_log(level, text):
        {"error": log.error, "warning": log.warning}.get(level, log.info)(text)

    problem = postmaster_problem(settings)
    if problem:
        # As dovecot-lda: no script runs with an unusable postmaster_address (no
        # rejection or notification could name a sender); the message is kept
        # where a delivery without Sieve puts it, and the log says why.
        log.error(f"sieve: Failed to initialize script execution: {problem}; "
                  "no Sieve script was run, the message is kept")
        return [save_with_fallback(storage, source, context.mailbox, context, log)]
    plan = sieve.delivery_scripts(settings, user.home)

    def open_duplicates():
        from .duplicates import for_home
        # The context's clock: vacation and redirect memory expire on the same
        # time as everything else the delivery decides (tests fix it).
        return for_home(user.home, clock=context.clock)

    # Made on first use: a script without duplicate, vacation or redirect (most
    # filter lists) does not import the database module (0.6 M instructions).
    duplicates = _Lazy(open_duplicates)
    try:
        result = sieve.run(plan["scripts"], source, context.envelope, settings=settings,
                           mailbox_exists=exists, log=admin_log,
                           global_scripts=plan["global_scripts"],
                           user_log=plan["user_log"], discard_script=plan["discard"],
                           home=user.home, default_mailbox=context.mailbox or "INBOX",
                           user=user.name, duplicate=_QuietDuplicates(duplicates, log),
                           now=context.clock())
    except Exception as exc:  # a bug in Sieve must not lose or defer the message
        log.error(f"sieve: internal error {type(exc).__name__}: {exc}; "
                  "falling back to implicit keep")
        return [save_with_fallback(storage, source, context.mailbox, context, log)]
    sender = context.sender
    if context.default_sender:
        sender = _Lazy(lambda: context.build_sender(log, duplicates))
    try:
        return perform(result, storage, source, context, log, sender=sender,
                       duplicates=duplicates)
    except RejectedError as exc:
        log.info(f"sieve: rejected: {exc}")
        raise


# RFC 5322 3.2.3 atext, the dot and the "@" of a plain addr-spec.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                   "!#$%&'*+-/=?^_`{|}~.@")


def postmaster_problem(settings):
    """Why the recipient's postmaster_address (expanded) is not one mailbox
    (send/postmaster.py: "postmaster@" from postmaster@%d without a domain, two
    addresses ...), or None; an empty setting means postmaster@<hostname>."""
    text = settings.get("postmaster_address") or ""
    if not text.strip():
        return None
    local, _, domain = text.partition("@")
    if local and domain and not set(text) - _PLAIN and "@" not in domain \
            and "" not in domain.split("."):
        # A plain local@domain is one mailbox as parse reads it: a filter list's
        # delivery does not import send/ for it.
        return None
    from .send.postmaster import InvalidPostmaster, parse
    try:
        parse(text)
    except InvalidPostmaster as exc:
        return str(exc)
    return None


class _Lazy:
    """Builds an object on first use (the sender, the duplicate database): a script
    that sends nothing imports nothing of send/."""

    def __init__(self, make):
        self._make, self._made = make, None

    def __getattr__(self, name):
        if self._made is None:
            self._made = self._make()
        return getattr(self._made, name)


class _QuietDuplicates:
    """Sieve's duplicate test over the user's database: a database that cannot be
    used is logged and means "not seen" (the test must never fail the delivery)."""

    def __init__(self, db, log):
        self.db, self.log = db, log

    def check(self, key, period):
        try:
            return self.db.check(key)
        except Exception as exc:
            self.log.warning(f"sieve: duplicate database: {exc}")
            return False

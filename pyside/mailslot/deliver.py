"""One delivery, start to finish: identity, settings, user, message, mailbox, log.

deliver(opts) is the pipeline of docs/architecture.md for one message and one recipient:

    refuse root -> check the relay's promise -> settings (file, userdb, -o)
    -> user (userdb or the running uid) -> message (bounded headers, streamed body)
    -> mailbox (-m or INBOX; a missing one created unless -n) -> save -> log

A message that cannot be saved into the -m mailbox goes to INBOX, as dovecot-lda
does; one that cannot be saved to INBOX either is a temporary failure. Once a copy
is saved, nothing afterwards turns the delivery into a failure the MTA would bounce.

Errors: every failure is a MailslotError subclass; cli.main() maps it to the exit
code. Running as root, or as another uid than the user's, is a PrivilegeError (75).

Security: no Python code delivers as root (docs/architecture.md, the privilege model); the
relay is the way to deliver for other uids. The target uid must lie inside
first_valid_uid..last_valid_uid and may never be 0.
"""

import os
import time

from .errors import (MailboxNameError, MailboxNotFoundError, PrivilegeError,
                     StorageError, UserUnknownError)
from .homedir import check_mail_root

RELAY_USER_VARIABLE = "MAILSLOT_RELAY_USER"
INBOX = ("INBOX",)
# What survives the environment clean-up without -k, as dovecot-lda keeps only what
# it needs; the relay's own identity variables start with MAILSLOT_RELAY_.
KEPT_ENVIRONMENT = ("USER", "HOME", "LOGNAME", "PATH", "TZ", "LANG", "LC_ALL")


def deliver(opts, clock=time.time):
    """Deliver the message on stdin (or opts.message_path); return EX_OK.

    clock: seconds since the epoch, for the log's stamps and what the save dates
    (Maildir names, mbox From_ lines); tests fix it."""
    refuse_root()
    if RELAY_USER_VARIABLE in os.environ:
        from .privilege import verify_relay_promise
        verify_relay_promise(os.environ)
    if not opts.keep_environment:
        clear_environment()
    settings, user = resolve_settings_and_user(opts)

    from .variables import user_values
    from .config import expand_user_settings
    values = user_values(user.name, user.home)
    values["hostname"] = settings["hostname"] or os.uname().nodename
    values["pid"] = str(os.getpid())
    expand_user_settings(settings, values)
    check_mail_root(settings, user)     # a missing home: made, or said what to do

    from .log import DeliveryLog
    log = DeliveryLog(user=user.name, log_path=settings["log_path"],
                      info_log_path=settings["info_log_path"],
                      syslog_facility=settings["syslog_facility"],
                      deliver_log_format=settings["deliver_log_format"],
                      home=user.home, clock=clock)
    for warning in user.warnings:
        log.warning(warning)
    if opts.sender_invalid is not None:
        log.warning(f"Invalid envelope sender address {opts.sender_invalid!r}, "
                    "using <> instead")

    message = open_message(opts)
    envelope = build_envelope(opts, user, message)
    message.envelope_sender = envelope["from"]    # mbox's From_ line names it
    header = settings["lda_original_recipient_header"]
    if header and envelope["orig_to"]:
        message.prepend.append(_header_line(header, envelope["orig_to"]))
    if opts.message_path is not None:
        from .message import scan_link_source
        scan_link_source(opts.message_path, message)

    from .storage import open_storage
    # Maildir names carry the system's host name (gethostname), as Dovecot's do;
    # the hostname setting is for the mail mailslot sends.
    storage = open_storage(settings["mail_location"], user=user.name, home=user.home,
                           hostname=os.uname().nodename,
                           mail_fsync=settings["mail_fsync"], settings=settings,
                           clock=clock)
    namespace = settings["namespace"]["inbox"]
    # No separator set: the format's own, as Dovecot ('.' Maildir++, '/' mbox and
    # LAYOUT=fs). Logged names then read as the user's client shows them.
    if not namespace.get("separator"):
        namespace["separator"] = storage.default_separator
    storage.display_separator = namespace["separator"]
    from . import sieve
    if sieve.has_scripts(settings, user.home):
        saved = file_by_sieve(storage, message, envelope, settings, opts, log, user,
                              now=clock())
    else:
        saved = [save_with_fallback(storage, message, opts.mailbox, settings, opts, log)]
    log_saved(log, saved, message, envelope, namespace.get("prefix", ""))
    return 0


def log_saved(log, saved, message, envelope, prefix):
    """Log each saved copy. The message is saved: a log that fails now is reported
    on stderr but does not fail the delivery, or the MTA would deliver it twice."""
    from .errors import LogError
    try:
        for result in saved:
            for warning in getattr(result, "warnings", None) or ():
                log.warning(warning)
            shown = result.mailbox if result.mailbox == "INBOX" else prefix + result.mailbox
            log.delivered(_log_values(message, envelope, result), f"saved mail to {shown}")
        if not saved:
            log.delivered(_log_values(message, envelope, None), "discarded by sieve")
    except LogError as exc:
        from .cli import report
        report(f"message delivered, but logging it failed: {exc}")


def file_by_sieve(storage, message, envelope, settings, opts, log, user, now=None):
    """Run the user's Sieve scripts and carry out the result; return the saves.
    now: the delivery's time, for Sieve's currentdate (None: the system clock)."""
    from . import sieve
    from .actions import perform
    from .errors import RejectedError

    def exists(name):
        try:
            return storage.mailbox_exists(mailbox_components(name, settings))
        except MailboxNameError:
            return False

    def admin_log(level, text):
        {"error": log.error, "warning": log.warning}.get(level, log.info)(text)

    plan = sieve.delivery_scripts(settings, user.home)
    from .duplicates import for_home
    duplicates = for_home(user.home)
    try:
        result = sieve.run(plan["scripts"], message, envelope, settings=settings,
                           mailbox_exists=exists, log=admin_log,
                           global_scripts=plan["global_scripts"],
                           user_log=plan["user_log"], discard_script=plan["discard"],
                           home=user.home, default_mailbox=opts.mailbox or "INBOX",
                           user=user.name, duplicate=_QuietDuplicates(duplicates, log),
                           now=now)
    except Exception as exc:  # a bug in Sieve must not lose or defer the message
        log.error(f"sieve: internal error {type(exc).__name__}: {exc}; "
                  "falling back to implicit keep")
        return [save_with_fallback(storage, message, opts.mailbox, settings, opts, log)]
    try:
        return perform(result, storage, message, settings=settings, opts=opts, log=log,
                       save_to=save_to, keep=save_with_fallback,
                       components=mailbox_components,
                       sender=_Lazy(lambda: outgoing_mail(settings, envelope, log,
                                                          duplicates)),
                       duplicates=duplicates)
    except RejectedError as exc:
        log.info(f"sieve: rejected: {exc}")
        raise


def outgoing_mail(settings, envelope, log, duplicates, *, transport=None, clock=None):
    """The delivery's sender for Sieve's outgoing mail (send/outgoing.py); the
    send package is imported only when a script actually sends."""
    import time
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


class _Lazy:
    """Builds the sender on first use: a script that sends nothing imports nothing."""

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


def refuse_root():
    """Refuse to run with any root id: the relay is the way to deliver for others."""
    if 0 in os.getresuid() or 0 in os.getresgid():
        raise PrivilegeError("refusing to deliver as root: run it as the user, or "
                             "through mailslot-relay -d USER (see mailslot-relay(8))")


def clear_environment():
    """Drop every variable but KEPT_ENVIRONMENT and the relay's (dovecot-lda without -k).

    Why: programs the delivery starts later (sendmail for redirects and vacation)
    must not inherit what the MTA's or the caller's environment happened to hold.
    """
    for key in list(os.environ):
        if key not in KEPT_ENVIRONMENT and not key.startswith("MAILSLOT_RELAY_"):
            del os.environ[key]


def resolve_settings_and_user(opts):
    """Load the settings, find the user, apply userdb fields and -o (they win)."""
    from .config import load_settings, apply_overrides, SCHEMA
    settings = load_settings(opts.config_path)
    apply_overrides(settings, opts.overrides, source="-o")
    user = find_user(opts.user, settings)
    if user.fields:
        pairs = []
        for key, value in user.fields.items():
            if key == "mail":
                pairs.append(("mail_location", value))
            elif key in SCHEMA or key.startswith("namespace/"):
                pairs.append((key, value))
        apply_overrides(settings, pairs, source="userdb")
        apply_overrides(settings, opts.overrides, source="-o")
    check_identity(user, settings)
    return settings, user


def find_user(name, settings):
    """Return the User for -d name, or the running user when name is None.

    user+detail@domain loses its detail (recipient_delimiter), then the name is
    normalised as Dovecot's auth process does (auth_username_format ...) before
    the userdbs are asked.
    """
    from . import userdb
    if name is None:
        return userdb.current_user()
    lookup_name = userdb.normalize_username(
        strip_detail(name, settings["recipient_delimiter"]), settings)
    user = userdb.lookup(lookup_name, settings["userdb"], settings=settings)
    if user is None:
        raise UserUnknownError(f"User doesn't exist: {userdb.printable(name)}")
    return user


def strip_detail(name, delimiters):
    """Return user@domain for user+detail@domain (recipient_delimiter characters)."""
    if not delimiters:
        return name
    local, at, domain = name.rpartition("@") if "@" in name else (name, "", "")
    cut = min((i for i in (local.find(d) for d in delimiters) if i > 0),
              default=-1)
    if cut > 0:
        local = local[:cut]
    return local + at + domain


def check_identity(user, settings):
    """The target must be a valid uid and gid, and the one this process runs as."""
    first, last = settings["first_valid_uid"], settings["last_valid_uid"]
    if user.uid == 0 or user.uid < first or (last and user.uid > last):
        raise PrivilegeError(f"Mail access for users with UID {user.uid} not permitted "
                             f"(see first_valid_uid in config file, uid {user.uid} "
                             f"of user {user.name})")
    first, last = settings["first_valid_gid"], settings["last_valid_gid"]
    if user.gid == 0 or user.gid < first or (last and user.gid > last):
        raise PrivilegeError(f"Mail access for users with GID {user.gid} not permitted "
                             f"(see first_valid_gid in config file, user {user.name})")
    if user.uid != os.getuid():
        raise PrivilegeError(f"user {user.name} has uid {user.uid}, but this process "
                             f"runs as uid {os.getuid()}: deliver for other users "
                             "through mailslot-relay")


def open_message(opts):
    """Read the message's header block from -p path or stdin."""
    from .message import read_message
    if opts.message_path is None:
        return read_message(0)
    from .errors import MessageError
    try:
        fd = os.open(opts.message_path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise MessageError(f"cannot open {opts.message_path}: {exc.strerror}") from None
    return read_message(fd)


def build_envelope(opts, user, message):
    """Return the envelope: from (sender), to (final), orig_to (original)."""
    if opts.sender_given:
        sender = opts.sender
    elif message.from_line_sender is not None:
        sender = message.from_line_sender
    else:
        from .cli import parse_address
        sender = parse_address(message.get("Return-Path", "")) or ""
    final = opts.final_recipient or opts.user or user.name
    original = opts.original_recipient or final
    return {"from": sender, "to": final, "orig_to": original}


def save_with_fallback(storage, message, target, settings, opts, log, *, flags=()):
    """Save into target (a -m name or Sieve's keep), falling back to INBOX as
    dovecot-lda does."""
    if target is not None:
        try:
            name = mailbox_components(target, settings)
        except MailboxNameError as exc:
            log.error(f"Invalid mailbox name {target!r}: {exc}; saving to INBOX")
            name = INBOX
        if name != INBOX:
            try:
                return save_to(storage, message, name, settings, opts, flags=flags)
            except StorageError as exc:
                if message.consumed and message.stored_path is None and \
                        not getattr(storage, "keeps_source_copy", False):
                    raise   # the input is gone and nothing was saved: defer (75)
                log.error(f"Failed to save mail to mailbox {target}: {exc}; "
                          "saving to INBOX instead")
    return save_to(storage, message, INBOX, settings, opts, flags=flags)


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


def save_to(storage, message, name, settings, opts, *, flags=(), force_create=False):
    """Save into mailbox name, creating (and subscribing) it when allowed.

    force_create is Sieve's fileinto :create, which creates the mailbox whatever
    lda_mailbox_autocreate and -n say.
    """
    autocreate = force_create or (settings["lda_mailbox_autocreate"]
                                  and not opts.no_create)
    if name != INBOX and not storage.mailbox_exists(name):
        if not autocreate:
            raise MailboxNotFoundError(f"Mailbox doesn't exist: {'/'.join(name)}")
        storage.create_mailbox(name)
        if opts.subscribe or settings["lda_mailbox_autosubscribe"]:
            storage.subscribe(name)
    elif name == INBOX and not storage.mailbox_exists(name):
        storage.create_mailbox(name)   # INBOX always exists for the user
    result = storage.save(name, message, flags=flags)
    if getattr(message, "stored_path", "") is None:
        message.stored_path = result.path
    return result


def _header_line(name, value):
    clean = "".join(ch for ch in value if ch >= " " and ch != "\x7f")
    return f"{name}: {clean}\n".encode("utf-8", "surrogateescape")


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
        "vsize": str(result.vsize),
        "mailbox": result.mailbox,
        "uid": "" if result.uid is None else str(result.uid),
    }


def lookup_main(opts):
    """mailslot-lda --lookup USER: one line for the relay's lookup child.

    Prints "OK\\tuid=N\\tgid=N\\thome=PATH" or "NOTFOUND"; a failing backend is a
    UserdbError (75). Tabs and newlines never appear in a printed value.
    """
    import sys
    refuse_root()
    from .config import load_settings, apply_overrides
    settings = load_settings(opts.config_path)
    apply_overrides(settings, opts.overrides, source="-o")
    try:
        user = find_user(opts.lookup, settings)
    except UserUnknownError:
        sys.stdout.write("NOTFOUND\n")
        from .errors import EX_NOUSER
        return EX_NOUSER
    home = user.home
    if any(ch in home for ch in "\t\n\r\0"):
        from .errors import UserdbError
        raise UserdbError(f"home directory of {opts.lookup} contains a control character")
    sys.stdout.write(f"OK\tuid={user.uid}\tgid={user.gid}\thome={home}\n")
    return 0

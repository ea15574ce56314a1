"""mailslot-lda's command line and process front: dovecot-lda's options, the one exit point.

    mailslot-lda [-d user] [-a original-recipient] [-r final-recipient]
                 [-f envelope-sender] [-c config] [-o key=value]... [-m mailbox]
                 [-n] [-s] [-e] [-k] [-p path]

main() parses the options, runs the delivery and turns whatever happened into an exit
code through errors.exit_code_for(), writing one line to stderr for every non-zero
exit (the MTA copies it into its log and, for a permanent failure, the bounce).

deliver_pipe() is the pipe's front for the delivery core (deliver.py): the steps
that concern this process rather than one recipient live here -- refusing root,
checking the relay's promise, clearing the environment (unless -k), the rule that
the user's uid is ours, reading fd 0 (or -p) -- then recipient.resolve() and one
deliver(context, message).

Errors: an unknown option or a missing argument is EX_USAGE (64). Every other failure
comes from the delivery; an unexpected exception is EX_TEMPFAIL (75), never a bounce.

Security: arguments are untrusted when the engine runs under the relay for a
caller; they are only parsed here, never passed to a shell. Addresses are bounded
by RFC 5321's limits (message.parse_address). No Python code delivers as root, and
the pipe delivers only for the uid it runs as: the relay is the way to deliver for
other users (SECURITY.md).
"""

import os
import sys

from .message import parse_address

# dovecot-lda's option letters: those that take an argument, and flags. No -D:
# dovecot-lda 2.3 refuses it (exit 64) and so does mailslot; MAILSLOT_DEBUG=1 in the
# environment prints the traceback of an internal error instead (DEBUG_VARIABLE).
OPTIONS_WITH_ARGUMENT = "acdfmopr"
FLAG_OPTIONS = "ekns"
DEBUG_VARIABLE = "MAILSLOT_DEBUG"
MAX_ARGUMENT_LENGTH = 4096
PROGRAM = "mailslot-lda"
RELAY_USER_VARIABLE = "MAILSLOT_RELAY_USER"
# What survives the environment clean-up without -k, as dovecot-lda keeps only what
# it needs; the relay's own identity variables start with MAILSLOT_RELAY_.
KEPT_ENVIRONMENT = ("USER", "HOME", "LOGNAME", "PATH", "TZ", "LANG", "LC_ALL")


class Options:
    """What the command line asked for."""

    def __init__(self):
        self.user = None              # -d
        self.original_recipient = None  # -a
        self.final_recipient = None     # -r
        self.sender = None            # -f, "" for <>
        self.sender_given = False
        self.sender_invalid = None    # an unparsable or non-ASCII -f, for the log
        self.config_path = None       # -c
        self.overrides = []           # -o key=value, in order
        self.mailbox = None           # -m ("" and unset both mean INBOX)
        self.no_create = False        # -n
        self.subscribe = False        # -s
        self.stderr_reject = False    # -e
        self.keep_environment = False  # -k
        self.message_path = None      # -p
        self.lookup = None            # --lookup USER (userdb issue)


def parse_args(argv):
    """Parse dovecot-lda's argv (without the program name) into Options."""
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if len(arg) > MAX_ARGUMENT_LENGTH:
            raise _usage("argument too long")
        if arg == "--":
            break
        if arg == "--lookup":
            if i >= len(argv):
                raise _usage("option --lookup requires a user name")
            opts.lookup = argv[i]
            i += 1
            continue
        if not arg.startswith("-") or arg == "-":
            raise _usage(f"unexpected argument {arg!r}")
        letters = arg[1:]
        while letters:
            letter, letters = letters[0], letters[1:]
            if letter in FLAG_OPTIONS:
                _set_flag(opts, letter)
            elif letter in OPTIONS_WITH_ARGUMENT:
                if letters:
                    value, letters = letters, ""
                elif i < len(argv):
                    value = argv[i]
                    i += 1
                else:
                    raise _usage(f"option -{letter} requires an argument")
                if len(value) > MAX_ARGUMENT_LENGTH:
                    raise _usage(f"option -{letter}: argument too long")
                _set_value(opts, letter, value)
            else:
                raise _usage(f"unknown option -{letter}")
    if i < len(argv):
        raise _usage(f"unexpected argument {argv[i]!r}")
    return opts


def _usage(text):
    """The UsageError (64) for a bad command line (errors._MORE: built only then)."""
    from .errors import UsageError
    return UsageError(text)


def _set_flag(opts, letter):
    if letter == "e":
        opts.stderr_reject = True
    elif letter == "k":
        opts.keep_environment = True
    elif letter == "n":
        opts.no_create = True
    elif letter == "s":
        opts.subscribe = True


def _set_value(opts, letter, value):
    if letter == "d":
        if not value:
            raise _usage("option -d requires a user name")
        opts.user = value
    elif letter == "a":
        opts.original_recipient = _recipient(value, "-a")
    elif letter == "r":
        opts.final_recipient = _recipient(value, "-r")
    elif letter == "f":
        opts.sender_given = True
        # As dovecot-lda: an address that is not ASCII (RFC 6531's SMTPUTF8, or
        # bytes that are not UTF-8) is a broken sender, taken as <>: nothing this
        # delivery sends (a rejection, a vacation reply) goes to it.
        parsed = parse_address(value) if value.isascii() else None
        if parsed is None:
            opts.sender, opts.sender_invalid = "", value
        else:
            opts.sender = parsed
    elif letter == "c":
        opts.config_path = value
    elif letter == "o":
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise _usage(f"option -o: expected key=value, not {value!r}")
        opts.overrides.append((key, val))
    elif letter == "m":
        opts.mailbox = value or None    # empty, as from -m ${extension}: INBOX
    elif letter == "p":
        opts.message_path = value


def _recipient(value, option):
    parsed = parse_address(value)
    if not parsed:
        raise _usage(f"option {option}: invalid address {value!r}")
    if not value.isascii():
        # As dovecot-lda (64): a recipient must be ASCII; SMTPUTF8 (RFC 6531)
        # addresses are not supported.
        raise _usage(f"option {option}: invalid address {value!r}: not ASCII")
    return parsed


def main(argv=None, log_tag=None):
    """Run one delivery; return the sysexits code.

    log_tag: a word the delivery log's prefix carries after the pid ("handoff"
    when mailslot-handoffd's worker runs this front: which path delivered)."""
    if argv is None:
        argv = sys.argv[1:]
    from .errors import exit_code_for, MailslotError
    # Read now: the delivery clears the environment (without -k) before it could be
    # read when the traceback is due.
    debug = bool(os.environ.get(DEBUG_VARIABLE))
    try:
        opts = parse_args(argv)
        if opts.lookup is not None:
            return lookup_main(opts)
        return deliver_pipe(opts, log_tag=log_tag)
    except MailslotError as exc:
        report(str(exc))
        return exit_code_for(exc)
    except KeyboardInterrupt:
        report("interrupted; the message was not delivered")
        return exit_code_for(KeyboardInterrupt())
    except Exception as exc:  # a bug: defer the message, never bounce it
        report(f"internal error: {type(exc).__name__}: {exc}")
        if debug:
            import traceback
            traceback.print_exc()
        return exit_code_for(exc)


def deliver_pipe(opts, clock=None, log_tag=None):
    """The pipe front: deliver the message on stdin (or -p) for -d; return EX_OK.

    The process-wide steps live here, not in the core (deliver.py): refusing root,
    the relay's promise, the environment, the "is it our uid" check, fd 0.
    clock: seconds since the epoch for the whole delivery (time.time; tests fix it).
    """
    refuse_root()
    if RELAY_USER_VARIABLE in os.environ:
        from .privilege import verify_relay_promise
        verify_relay_promise(os.environ)
    if not opts.keep_environment:
        clear_environment()
    from .recipient import load_base_settings, resolve
    base = load_base_settings(opts.config_path, opts.overrides)
    rcpt = resolve(base, opts.user, opts.overrides, check_user=check_our_uid)
    settings = rcpt.settings
    warnings = []
    if opts.sender_invalid is not None:
        why = "" if opts.sender_invalid.isascii() else " (not ASCII)"
        warnings.append(f"Invalid envelope sender address {opts.sender_invalid!r}{why}, "
                        "using <> instead")
    message, opened_fd = open_message(opts, settings["mail_temp_dir"] or None)
    from .deliver import DeliveryContext, deliver
    context = DeliveryContext(settings, rcpt.user,
                              build_envelope(opts, rcpt.user, message, settings),
                              mailbox=opts.mailbox, no_create=opts.no_create,
                              subscribe=opts.subscribe, stderr_reject=opts.stderr_reject,
                              extra=rcpt.extra, warnings=warnings, report=report,
                              only_copy=True,
                              log_tag=log_tag,
                              **({"clock": clock} if clock is not None else {}))
    try:
        deliver(context, message)
    finally:
        message.close()
        if opened_fd is not None:
            # Why: the -p file's descriptor is ours, not the message's; a process
            # that delivers again (the fast path's reused worker) must not keep it.
            os.close(opened_fd)
    return 0


def refuse_root():
    """Refuse to run with any root id: the relay is the way to deliver for others."""
    if 0 in os.getresuid() or 0 in os.getresgid():
        from .errors import PrivilegeError
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


def check_our_uid(user):
    """The pipe writes as the process it is: the user must be the one we run as."""
    if user.uid != os.getuid():
        from .errors import PrivilegeError
        raise PrivilegeError(f"user {user.name} has uid {user.uid}, but this process "
                             f"runs as uid {os.getuid()}: deliver for other users "
                             "through mailslot-relay")


def open_message(opts, temp_dir=None):
    """Read the message's header block from -p path or stdin (the rest is read once,
    when the delivery first needs it). Returns (message, the descriptor this opened
    for -p, which the caller closes after the delivery; None for stdin)."""
    from .message import read_message, scan_link_source
    if opts.message_path is None:
        return read_message(0, temp_dir), None
    from .errors import MessageError
    try:
        fd = os.open(opts.message_path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise MessageError(f"cannot open {opts.message_path}: {exc.strerror}") from None
    try:
        message = read_message(fd, temp_dir)
        scan_link_source(opts.message_path, message)
    except BaseException:
        os.close(fd)
        raise
    return message, fd


def build_envelope(opts, user, message, settings=None):
    """Return the envelope: from (sender), to (final), orig_to (original).

    As dovecot-lda: the original recipient is -a's; without -a, the first address
    of the message's lda_original_recipient_header field when the setting names
    one and that address is local@domain; else the user's name, with
    "@<hostname>" when it has no domain. The final recipient is -r's, else the
    original recipient (so with Postfix's -a "$RECIPIENT" and no -r, vacation
    knows the address the mail came to). The message itself is not changed
    (dovecot-lda writes no such field)."""
    if opts.sender_given:
        sender = opts.sender
    elif message.from_line_sender is not None:
        sender = message.from_line_sender
    else:
        sender = parse_address(message.get("Return-Path", "")) or ""
    original = opts.original_recipient
    header = settings["lda_original_recipient_header"] if settings else ""
    if original is None and header:
        original = _header_address(message.get(header) or "")
    if original is None:
        original = opts.user or user.name
        if "@" not in original:
            # As dovecot-lda: a user without a domain is user@<hostname> (the
            # setting, else the system's), an address for Sieve's envelope "to",
            # %t and a rejection's Final-Recipient (RFC 3464 2.3.2), never a bare
            # name.
            original += "@" + ((settings or {}).get("hostname") or os.uname().nodename)
    return {"from": sender, "to": opts.final_recipient or original, "orig_to": original}


def _header_address(value):
    """The first address of a header field's value ("Name <a@b>, c@d" -> "a@b")
    when it is local@domain with both parts, else None."""
    if "@" not in value:
        return None
    from email.utils import getaddresses   # only with the setting and no -a
    for _, address in getaddresses([value])[:1]:
        address = parse_address(address)
        local, at, domain = (address or "").rpartition("@")
        if at and local and domain:
            return address
    return None


def lookup_main(opts):
    """mailslot-lda --lookup USER: one line for the relay's lookup child.

    Prints "OK\tuid=N\tgid=N\thome=PATH" or "NOTFOUND"; a failing backend is a
    UserdbError (75). Tabs and newlines never appear in a printed value.
    """
    refuse_root()
    from .errors import UserUnknownError
    from .recipient import find_user, load_base_settings
    settings = load_base_settings(opts.config_path, opts.overrides)
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


def exit_now(code):
    """End this process with exit code `code` without the interpreter's teardown.

    The installed mailslot-lda calls this with main()'s code. Python's normal exit
    frees every module, function and object one by one before the process ends:
    about 2 ms of CPU for the plain path's modules, a third of what the engine adds
    to a bare interpreter start (docs/benchmarks.md), and nothing a delivery needs.
    Every file a delivery writes goes through os.write and, where it must last, an
    fsync before main() returns; the spool is an unnamed file (O_TMPFILE or
    memfd); dotlocks are removed and mailbox locks released in the code that took
    them; sendmail is waited for. So stdout and stderr are flushed here, and the
    process then ends with os._exit, as the kernel would close what is left.

    The normal exit stays whenever something could need it: a flush that fails
    (Python then reports it and exits 120, as before), an atexit handler, or a
    thread besides this one.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        sys.exit(code)
    # A handler can only have been registered by code that imported atexit.
    atexit = sys.modules.get("atexit")
    if atexit is not None and getattr(atexit, "_ncallbacks", lambda: 1)():
        sys.exit(code)
    os._exit(code)


def report(text):
    """Write one line to stderr for the MTA's log."""
    line = " ".join(text.split())   # one line, whatever the reason carried
    if not line.isprintable():
        # A Sieve reject reason is the script's (or sender's) text: no control
        # bytes or terminal escapes on the MTA's stderr (issue 20.9).
        from .log import sanitize
        line = sanitize(line)
    try:
        sys.stderr.write(f"{PROGRAM}: {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass

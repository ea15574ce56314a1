"""mailslot-lda's command line: dovecot-lda's options, and the one exit point.

    mailslot-lda [-d user] [-a original-recipient] [-r final-recipient]
                 [-f envelope-sender] [-c config] [-o key=value]... [-m mailbox]
                 [-n] [-s] [-e] [-k] [-p path]

main() parses the options, runs the delivery and turns whatever happened into an exit
code through errors.exit_code_for(), writing one line to stderr for every non-zero
exit (the MTA copies it into its log and, for a permanent failure, the bounce).

Errors: an unknown option or a missing argument is EX_USAGE (64). Every other failure
comes from the delivery; an unexpected exception is EX_TEMPFAIL (75), never a bounce.

Security: arguments are untrusted when the engine runs under the relay for a
caller; they are only parsed here, never passed to a shell. Addresses are bounded
by RFC 5321's limits.
"""

import os
import sys

# dovecot-lda's option letters: those that take an argument, and flags. No -D:
# dovecot-lda 2.3 refuses it (exit 64) and so does mailslot; MAILSLOT_DEBUG=1 in the
# environment prints the traceback of an internal error instead (DEBUG_VARIABLE).
OPTIONS_WITH_ARGUMENT = "acdfmopr"
FLAG_OPTIONS = "ekns"
DEBUG_VARIABLE = "MAILSLOT_DEBUG"
# RFC 5321 4.5.3.1.3: a reverse- or forward-path is at most 256 octets.
MAX_PATH_LENGTH = 256
MAX_ARGUMENT_LENGTH = 4096
PROGRAM = "mailslot-lda"


class Options:
    """What the command line asked for."""

    def __init__(self):
        self.user = None              # -d
        self.original_recipient = None  # -a
        self.final_recipient = None     # -r
        self.sender = None            # -f, "" for <>
        self.sender_given = False
        self.sender_invalid = None    # the text of an unparsable -f, for the log
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
    from .errors import UsageError
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if len(arg) > MAX_ARGUMENT_LENGTH:
            raise UsageError("argument too long")
        if arg == "--":
            break
        if arg == "--lookup":
            if i >= len(argv):
                raise UsageError("option --lookup requires a user name")
            opts.lookup = argv[i]
            i += 1
            continue
        if not arg.startswith("-") or arg == "-":
            raise UsageError(f"unexpected argument {arg!r}")
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
                    raise UsageError(f"option -{letter} requires an argument")
                if len(value) > MAX_ARGUMENT_LENGTH:
                    raise UsageError(f"option -{letter}: argument too long")
                _set_value(opts, letter, value)
            else:
                raise UsageError(f"unknown option -{letter}")
    if i < len(argv):
        raise UsageError(f"unexpected argument {argv[i]!r}")
    return opts


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
    from .errors import UsageError
    if letter == "d":
        if not value:
            raise UsageError("option -d requires a user name")
        opts.user = value
    elif letter == "a":
        opts.original_recipient = _recipient(value, "-a")
    elif letter == "r":
        opts.final_recipient = _recipient(value, "-r")
    elif letter == "f":
        opts.sender_given = True
        parsed = parse_address(value)
        if parsed is None:
            opts.sender, opts.sender_invalid = "", value
        else:
            opts.sender = parsed
    elif letter == "c":
        opts.config_path = value
    elif letter == "o":
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError(f"option -o: expected key=value, not {value!r}")
        opts.overrides.append((key, val))
    elif letter == "m":
        opts.mailbox = value or None    # empty, as from -m ${extension}: INBOX
    elif letter == "p":
        opts.message_path = value


def _recipient(value, option):
    from .errors import UsageError
    parsed = parse_address(value)
    if not parsed:
        raise UsageError(f"option {option}: invalid address {value!r}")
    return parsed


def parse_address(text):
    """Return the address in text ("" for <>), or None when it cannot be parsed.

    Accepts "addr", "<addr>" and "<>"; an address is local@domain or a bare local
    part, with a quoted local part allowed; no control characters or unquoted
    spaces; at most MAX_PATH_LENGTH octets (RFC 5321).
    """
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if text == "":
        return ""
    if len(text.encode("utf-8", "surrogateescape")) > MAX_PATH_LENGTH:
        return None
    in_quotes = False
    escaped = False
    for ch in text:
        if ord(ch) < 32 or ord(ch) == 127:
            return None
        if escaped:
            escaped = False
        elif in_quotes and ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif not in_quotes and ch in " <>(),;\\[]":
            return None
    if in_quotes or text.startswith("@") or text.endswith("@"):
        return None
    return text


def main(argv=None):
    """Run one delivery; return the sysexits code."""
    if argv is None:
        argv = sys.argv[1:]
    from .errors import exit_code_for, MailslotError
    # Read now: the delivery clears the environment (without -k) before it could be
    # read when the traceback is due.
    debug = bool(os.environ.get(DEBUG_VARIABLE))
    try:
        opts = parse_args(argv)
        if opts.lookup is not None:
            from .deliver import lookup_main
            return lookup_main(opts)
        from .deliver import deliver
        return deliver(opts)
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

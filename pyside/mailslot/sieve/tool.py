"""`mailslot sieve-test` and `mailslot sievec`: the administrator's Sieve tools.

sieve_test_main(argv) runs a script against a message file and prints what it
would do, in the layout of Pigeonhole's sieve-test (or as JSON with --json):

    mailslot sieve-test [-a orig-rcpt] [-f sender] [-r rcpt] [-m mailbox] [-e]
                        [-t trace] [-x "+ext -ext"] [-C] [-c config] [-l location]
                        [-s script]... [--json] SCRIPT MESSAGE

sievec_main(argv) checks and compiles a script (mailslot sievec [-x ...] SCRIPT
[OUT]), writing the compiled form to the compile cache (or OUT).

Exit status: 0 on success, 1 on failure (compile error, run-time error, bad
usage prints usage and exits 1 too; Pigeonhole uses 64/89 there). A
postmaster_address that is not one mailbox for the running user (postmaster@%d
without a domain) is fatal before any script runs, as in Pigeonhole's tool. Errors go to
stderr as "<script>: line N: error: <message>.".

The envelope defaults are sieve-test's: the sender comes from Return-Path, Sender
or From, the recipient from Envelope-To or To, else sender@example.com /
recipient@example.com.

-c reads sieve settings from a Dovecot-style configuration file (key = value,
plugin { } blocks), so one file can configure both this and Pigeonhole's tool,
or from mailslot's own settings file (a name ending in .yaml or .yml).
"""

import os
import sys

USAGE_TEST = """\
Usage: mailslot sieve-test [-a <orig-recipient-address>] [-c <config-file>]
                  [-C] [-e] [-f <envelope-sender>] [-l <mail-location>]
                  [-m <default-mailbox>] [-r <recipient-address>]
                  [-s <script-file>] [-t <trace-file>] [-x <extensions>]
                  [--json] <script-file> <mail-file>
"""

USAGE_SIEVEC = """\
Usage: mailslot sievec [-c <config-file>] [-x <extensions>] <script-file> [<out-file>]
"""


class UsageProblem(Exception):
    pass


def _getopt(argv, spec, long_flags=()):
    """Tiny getopt: spec like 'a:f:e'; returns (opts list, args)."""
    opts = []
    args = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            args.extend(argv[i + 1:])
            break
        if arg.startswith("--"):
            if arg[2:] in long_flags:
                opts.append((arg, None))
                i += 1
                continue
            raise UsageProblem("Unknown argument: %s" % arg)
        if arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                ch = arg[j]
                pos = spec.find(ch)
                if pos < 0 or ch == ":":
                    raise UsageProblem("Unknown argument: %s" % ch)
                if pos + 1 < len(spec) and spec[pos + 1] == ":":
                    if j + 1 < len(arg):
                        value = arg[j + 1:]
                    else:
                        i += 1
                        if i >= len(argv):
                            raise UsageProblem("Missing argument for -%s" % ch)
                        value = argv[i]
                    opts.append(("-" + ch, value))
                    break
                opts.append(("-" + ch, None))
                j += 1
            i += 1
            continue
        args.append(arg)
        i += 1
    return opts, args


def read_config(path):
    """Read key = value settings from a Dovecot-style file (sections flattened),
    or mailslot's own settings file (*.yaml, *.yml: the deliveries' settings,
    so that sievec compiles an administrator's script exactly as they will)."""
    if path.endswith((".yaml", ".yml")):
        from ..config import load_settings
        from ..errors import ConfigError
        try:
            # why: no settings cache written by a root-run tool (use_cache=False).
            return dict(load_settings(path, use_cache=False))
        except ConfigError as exc:
            raise OSError(str(exc)) from None
    settings = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            line = raw.strip()
            if not line or line.startswith("#") or line.endswith("{") or line == "}":
                continue
            if "=" in line:
                key, value = line.split("=", 1)
                settings[key.strip()] = value.strip()
    return settings


def _header_address(fields, name):
    from .address import parse_address_list
    lname = name.lower()
    for key, value in fields:
        if key.lower() == lname:
            for item in parse_address_list(value)[:1]:
                if item is not None and item.localpart and item.domain:
                    return item
            return None
    return None


def default_envelope(message, sender=None, rcpt=None, orig=None):
    """sieve-test's envelope defaults (sieve-tool.c get_envelope_data)."""
    from .address import Address
    fields = message.header_fields()
    if sender is None:
        for name in ("Return-path", "Sender", "From"):
            sender = _header_address(fields, name)
            if sender is not None:
                break
        else:
            sender = Address("sender", "example.com")
    if rcpt is None:
        for name in ("Envelope-To", "To"):
            rcpt = _header_address(fields, name)
            if rcpt is not None:
                break
        else:
            rcpt = Address("recipient", "example.com")
    return sender, rcpt, orig or rcpt


def _parse_addr_option(value, allow_localpart):
    from .address import AddressError, parse_path
    try:
        addr = parse_path(value)
    except AddressError as exc:
        raise UsageProblem(str(exc)) from None
    if addr is not None and addr.domain is None and not allow_localpart:
        raise UsageProblem("missing domain")
    return addr


def _maildir_exists(location):
    """A mailbox_exists for -l maildir:PATH (Maildir++ folder names)."""
    path = location.split(":", 1)[1] if ":" in location else location
    path = path.split(":", 1)[0]

    def exists(name):
        if name.upper() == "INBOX":
            return True   # Dovecot creates INBOX on demand: it always exists
        return os.path.isdir(os.path.join(path, "." + name.replace("/", ".")))
    return exists


def sieve_test_main(argv):
    from .diagnostics import Diagnostics
    from .extensions import enabled_extensions
    from .mail import RawMessage
    from .runner import OK, RunContext, RESOURCE_LIMIT, TEMP_FAILURE, \
        execute_sequence
    from .script import ScriptNotFoundError, ScriptReadError, load_program, \
        make_env, script_name
    from .settings import SieveSettings

    _raw_bytes_output()
    err = sys.stderr
    try:
        opts, args = _getopt(argv, "r:a:f:m:d:l:s:eCt:T:DP:x:c:u:", ("json",))
        if len(args) < 1:
            raise UsageProblem("Missing <script-file> argument")
        if len(args) < 2:
            raise UsageProblem("Missing <mail-file> argument")
        if len(args) > 2:
            raise UsageProblem("Unknown argument: %s" % args[2])
    except UsageProblem as exc:
        err.write(USAGE_TEST)
        err.write("sieve-test: Fatal: %s\n" % exc)
        return 1
    conf = {}
    scripts_before = []
    sender = rcpt = orig = None
    mailbox = None
    as_json = execute = force = False
    extensions = None
    trace_file = None
    location = None
    try:
        for opt, value in opts:
            if opt == "-c":
                conf.update(read_config(value))
            elif opt == "-r":
                rcpt = _parse_addr_option(value, True)
            elif opt == "-a":
                orig = _parse_addr_option(value, True)
            elif opt == "-f":
                sender = _parse_addr_option(value, False)
            elif opt == "-m":
                mailbox = value
            elif opt == "-s":
                scripts_before.append(value)
            elif opt == "-e":
                execute = True
            elif opt == "-C":
                force = True
            elif opt == "-x":
                extensions = value
            elif opt == "-t":
                trace_file = value
            elif opt == "-l":
                location = value
            elif opt == "--json":
                as_json = True
    except UsageProblem as exc:
        err.write("sieve-test: Fatal: Invalid address parameter: %s\n" % exc)
        return 1
    except OSError as exc:
        err.write("sieve-test: Fatal: %s\n" % exc)
        return 1
    script_path, mail_path = args
    if location is None:
        location = conf.get("mail_location")
    problem = _postmaster_problem(conf)
    if problem:
        # As Pigeonhole's tool: no script runs with an unusable postmaster_address
        # (a delivery keeps the message then: sieve_filing.py).
        err.write("sieve-test: Fatal: Failed to initialize script execution: %s\n"
                  % problem)
        return 1
    settings = SieveSettings.from_mapping(conf, os.environ.get("HOME"))
    if mailbox:
        settings.default_mailbox = mailbox
    base = None
    if settings.extensions is not None:
        base, _ = enabled_extensions(settings.extensions)
    if extensions is not None:
        if base is None:
            enabled, unknown = enabled_extensions(extensions)
        else:
            enabled, unknown = enabled_extensions(extensions, base=frozenset(base))
    else:
        enabled = base
    from .extensions import subaddress
    subaddress.set_delimiter(settings.recipient_delimiter)

    try:
        with open(mail_path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        err.write("sieve-test: Fatal: failed to open mail file %s: %s\n"
                  % (mail_path, exc.strerror))
        return 1
    message = RawMessage(data)
    env_sender, env_rcpt, env_orig = default_envelope(message, sender, rcpt, orig)
    from .runner import Envelope
    envelope = Envelope(env_sender, env_rcpt, env_orig,
                        os.environ.get("USER") or "user")

    text_out = []
    diag = Diagnostics(sink=None if as_json else (lambda line: err.write(line + "\n")))
    ctx = RunContext(message, envelope, settings, diag,
                     mailbox_exists=_maildir_exists(location) if location else None,
                     user=os.environ.get("USER"))
    multi = bool(scripts_before)
    ctx.result.multiscript = multi
    ctx.enabled_extensions = enabled if enabled is not None else \
        enabled_extensions(settings.extensions)[0]
    if trace_file:
        try:
            ctx.trace = _Trace(trace_file)
        except OSError as exc:
            err.write("sieve-test: Fatal: failed to open trace file %s: %s\n"
                      % (trace_file, exc.strerror or exc))
            return 1
    compile_failed = []

    def loader(path, is_main, name_by_path):
        def load():
            env = make_env(settings, enabled=enabled)
            name = path if name_by_path else None
            try:
                program = load_program(path, env, diag, settings, name=name,
                                       cache=not force)
            except ScriptNotFoundError:
                diag.error(script_name(path), "script not found")
                program = None
            except ScriptReadError as exc:
                diag.error(script_name(path), "failed to open script: %s"
                           % exc.strerror)
                program = None
            if program is None:
                compile_failed.append(path)
                raise _CompileFailed(path)
            return program

        def load_with_header():
            if multi and not as_json:
                text_out.append(("## Executing script: %s\n" if is_main
                                 else "\n## Executing script: %s\n") % path)
            return load()
        return load_with_header

    per_script = []

    def on_script(name, status):
        if status == OK and not as_json and not execute:
            text_out.append("\n".join(ctx.result.print_lines()) + "\n")
        per_script.append((name, status))

    # With -C Pigeonhole names a -s script by its path, else by its file name.
    loaders = [(p if force else script_name(p), loader(p, False, force))
               for p in scripts_before]
    loaders.append((script_name(script_path), loader(script_path, True, False)))
    try:
        status, ran = execute_sequence(ctx, loaders, on_script)
    except _CompileFailed as exc:
        # Like Pigeonhole's tool: a script that does not compile is fatal.
        if as_json:
            import json
            sys.stdout.write(json.dumps({"status": "compile error", "scripts": [],
                                         "actions": [], "implicit_keep": None,
                                         "errors": diag.error_lines(),
                                         "warnings": []}, indent=2) + "\n")
        else:
            sys.stdout.write("".join(text_out))
            err.write("sieve-test: Fatal: failed to compile sieve script '%s'\n"
                      % exc.args[0])
        sys.stdout.flush()
        return 1
    if execute and status == OK and not as_json:
        text_out.append("".join(line + "\n" for line in _execute_lines(ctx)))
        # The mail a delivery would send, whole; nothing is sent (send/preview.py).
        from ..send.preview import preview
        from .address import smtp_encode
        text_out.append("".join(line + "\n" for line in preview(
            ctx.result.to_dict()["actions"], data,
            {k: smtp_encode(a.localpart, a.domain) if a is not None else ""
             for k, a in (("from", env_sender), ("to", env_rcpt), ("orig_to", env_orig))},
            conf, hostname=conf.get("hostname") or os.uname().nodename)))
    if as_json:
        import json
        data = ctx.result.to_dict()
        out = {"status": status, "scripts": ran,
               "actions": data["actions"] if status == OK else [],
               "implicit_keep": None, "errors": diag.error_lines(),
               "warnings": [l for l in diag.lines if ": warning: " in l]}
        if status != OK or data["implicit_keep"]:
            flags = data.get("implicit_keep_flags", []) if status == OK else []
            out["implicit_keep"] = {"mailbox": ctx.result.default_mailbox,
                                    "flags": flags}
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write("".join(text_out))
        if status == OK:
            err.write("sieve-test: Info: final result: success\n")
            if not execute and any(a.kind in ("redirect", "vacation", "notify", "reject")
                                   for a in ctx.result.actions):
                err.write("sieve-test: Info: no mail was sent; -e shows each message a "
                          "delivery would send\n")
        elif status == RESOURCE_LIMIT:
            err.write("sieve-test: Info: resource limit exceeded\n")
        elif status == TEMP_FAILURE:
            err.write("sieve-test: Info: final result: temporary failure\n")
        else:
            err.write("sieve-test: Info: final result: failed; resolved with "
                      "successful implicit keep\n")
    sys.stdout.flush()
    return 0 if status == OK else 1


def _postmaster_problem(conf):
    """Why conf's postmaster_address, expanded for the running user ($USER,
    $HOME: %d is their domain), is not one mailbox (send/postmaster.py), or
    None; it is stored expanded for -e's preview."""
    text = conf.get("postmaster_address")
    if not text:
        return None
    hostname = conf.get("hostname") or os.uname().nodename
    if "%" in text:
        from ..config import postmaster_template
        from ..variables import expand, user_values
        values = user_values(os.environ.get("USER") or "", os.environ.get("HOME") or "")
        values.update(hostname=hostname, pid=str(os.getpid()))
        try:
            text = expand(postmaster_template(text, values), values)
        except ValueError as exc:
            return "postmaster_address: %s" % exc
        conf["postmaster_address"] = text
    from ..send.postmaster import InvalidPostmaster, parse
    try:
        parse(text)
    except InvalidPostmaster as exc:
        return str(exc)
    return None


def _raw_bytes_output():
    """Print bytes that are not UTF-8 (surrogate escapes) as the bytes they were."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="surrogateescape")
        except (AttributeError, ValueError):
            pass


def _execute_lines(ctx):
    """-e: the log lines carrying out the actions would give (nothing is sent)."""
    out = []
    result = ctx.result
    for action in result.actions:
        d = action.to_dict(result)
        kind = d["type"]
        if kind in ("store", "keep"):
            out.append("info: stored mail into mailbox '%s'." % d["mailbox"])
        elif kind == "redirect":
            out.append("info: forwarded to <%s> (shown below, not sent by sieve-test)."
                       % d["address"])
        elif kind in ("reject", "ereject"):
            out.append("info: rejected message (shown below, not sent by sieve-test).")
        elif kind == "discard":
            out.append("info: marked message to be discarded if not explicitly "
                       "delivered (discard action).")
        elif kind == "vacation":
            out.append("info: vacation response (shown below when one is due; not "
                       "sent by sieve-test).")
    if result.to_dict()["implicit_keep"]:
        out.append("info: stored mail into mailbox '%s'." % result.default_mailbox)
    return out


class _CompileFailed(Exception):
    """A script given to sieve-test does not compile (fatal, as in Pigeonhole)."""


class _Trace:
    """-t: a plain trace of the commands run (not Pigeonhole's format)."""

    def __init__(self, path):
        if path == "-":
            self.fh = sys.stdout
        else:
            # As root, opened without following what another user can change.
            from .cache_write import open_append
            self.fh = os.fdopen(open_append(path), "a", encoding="utf-8")

    def write(self, line):
        self.fh.write(line + "\n")


def sievec_main(argv):
    from .diagnostics import Diagnostics
    from .extensions import enabled_extensions
    from .script import ScriptNotFoundError, ScriptReadError, compile_file, make_env
    from .settings import SieveSettings
    err = sys.stderr
    try:
        opts, args = _getopt(argv, "c:dx:DP:u:", ())
        if not args:
            raise UsageProblem("Missing <script-file> argument")
        if len(args) > 2:
            raise UsageProblem("Unknown argument: %s" % args[2])
    except UsageProblem as exc:
        err.write(USAGE_SIEVEC)
        err.write("sievec: Fatal: %s\n" % exc)
        return 1
    conf = {}
    extensions = None
    for opt, value in opts:
        if opt == "-c":
            try:
                conf.update(read_config(value))
            except OSError as exc:
                err.write("sievec: Fatal: %s\n" % exc)
                return 1
        elif opt == "-x":
            extensions = value
    settings = SieveSettings.from_mapping(conf, os.environ.get("HOME"))
    enabled = None
    if extensions is not None:
        enabled, _ = enabled_extensions(extensions)
    path = args[0]
    if os.path.isdir(path):
        targets = sorted(os.path.join(path, n) for n in os.listdir(path)
                         if n.endswith(".sieve"))
    else:
        targets = [path]
    status = 0
    for target in targets:
        diag = Diagnostics(sink=lambda line: err.write(line + "\n"))
        # A root-owned script is an administrator's (sieve_before/after/default):
        # compile it as the delivery will, with sieve_global_extensions, so that
        # deliveries can use the cache root writes beside it.
        try:
            is_global = os.stat(target).st_uid == 0
        except OSError:
            is_global = False
        env = make_env(settings, enabled=enabled, global_script=is_global)
        try:
            program, st = compile_file(target, env, diag, settings.max_script_size)
        except (ScriptNotFoundError, ScriptReadError) as exc:
            err.write("sievec: Fatal: failed to open sieve script '%s': %s\n"
                      % (target, exc.strerror))
            return 1
        if program is None:
            err.write("sievec: Fatal: failed to compile sieve script '%s'\n" % target)
            return 1
        from .cache import save_program
        out = args[1] if len(args) > 1 and not os.path.isdir(path) else None
        problem = save_program(target, program, settings, env, out_path=out)
        if problem:
            err.write("sievec: Warning: %s\n" % problem)
    return status

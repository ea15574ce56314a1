"""Running Sieve scripts for one delivery: the sequence, the context, the result.

run(scripts, message, envelope, settings=..., mailbox_exists=..., log=...) is the
delivery engine's entry point (re-exported by the package, see __init__.py). It
compiles each script (through the cache), runs them in order the way Pigeonhole
runs sieve_before / the personal script / sieve_after -- the next script runs
only while the implicit keep is still in force -- and returns a SieveResult.

execute_sequence() is the shared core; tool.py uses it with printing callbacks.

Errors: nothing a script does raises out of run(). A script that does not
compile, or fails at run time, ends the sequence; the result then keeps the
actions of the scripts before it and sets implicit_keep, as Pigeonhole does
("Execution of script ... failed, but implicit keep was successful"). Errors go
to the user log (<script>.log or sieve_user_log) and a one-line pointer to the
admin log callback.
"""

import os
import time

from .address import AddressError, parse_path
from .cpu import CpuTimeExceeded, cpu_guard
from .diagnostics import Diagnostics
from .interpreter import CpuLimitError, Interpreter, SieveRunError, StopScript
from .mail import MessageView
from .memory import Budget, MemoryLimitExceeded
from .result import FlagsEffect, Result
from .settings import SieveSettings
from .location import expand_home as _expand_home, parse_location

OK, FAILURE, TEMP_FAILURE, RESOURCE_LIMIT = "success", "failed", "temporary failure", \
    "resource limit"


class Envelope:
    """The SMTP envelope: addresses are address.Address or None (<>)."""

    __slots__ = ("sender", "recipient", "orig_recipient", "auth_user")

    def __init__(self, sender=None, recipient=None, orig_recipient=None,
                 auth_user=None):
        self.sender = sender
        self.recipient = recipient
        self.orig_recipient = orig_recipient
        self.auth_user = auth_user

    @classmethod
    def from_host(cls, envelope):
        """Build from the host's envelope: a mapping or an object with
        from/to/orig_to/auth (strings; "" or "<>" is the null sender)."""
        if isinstance(envelope, Envelope):
            return envelope
        if envelope is None:
            return cls()

        def get(*names):
            for name in names:
                if isinstance(envelope, dict):
                    if name in envelope:
                        return envelope[name]
                elif hasattr(envelope, name):
                    return getattr(envelope, name)
            return None

        def addr(value):
            if value is None:
                return None
            if not isinstance(value, str):
                return value
            try:
                return parse_path(value)
            except AddressError:
                return None

        return cls(addr(get("from", "from_", "sender")),
                   addr(get("to", "recipient", "rcpt_to")),
                   addr(get("orig_to", "orig_recipient")),
                   get("auth", "auth_user"))


class SieveResult:
    """What the engine carries out. See the package docstring."""

    def __init__(self):
        self.status = OK
        self.actions = []            # list of dicts, see result.Result.to_dict
        self.implicit_keep = True
        self.implicit_keep_mailbox = "INBOX"
        self.implicit_keep_flags = []
        self.errors = []             # formatted error lines
        self.warnings = []
        self.header_fields = None    # edited header (editheader), else None
        self.scripts_run = []

    def to_dict(self):
        return {"status": self.status, "actions": self.actions,
                "implicit_keep": self.implicit_keep,
                "implicit_keep_mailbox": self.implicit_keep_mailbox,
                "implicit_keep_flags": self.implicit_keep_flags,
                "errors": self.errors, "warnings": self.warnings}


class RunContext:
    """Everything a run shares across its scripts."""

    def __init__(self, message, envelope, settings, diag, mailbox_exists=None,
                 duplicate=None, user=None, log=None, now=None):
        self.message = message if isinstance(message, MessageView) \
            else MessageView(message, Budget(settings.max_memory))
        self.envelope = Envelope.from_host(envelope)
        self.settings = settings
        self.diag = diag
        self.result = Result(settings.default_mailbox, settings.max_actions,
                             settings.max_redirects)
        self.glob_cache = {}
        self.address_cache = {}      # (address part, header value) -> [str]
        self.envelope_cache = None   # (envelope state, {(parts, part): [str]}): core_runtime
        self.regex_cache = {}
        self.cpu_deadline = None
        self.mailbox_exists = mailbox_exists
        self.duplicate = duplicate
        self.user = user
        self.log = log
        self.now = time.time() if now is None else now
        self.global_vars = {}
        self.included = set()
        self.include_depth = 0
        self.imap4flags_implicit = False
        self.notifications = []
        self.enabled_extensions = None   # None: every known extension counts
        self.trace = None                # an object with write(line) (sieve-test -t)
        self.root_program = None
        self.include_stack = []

    def namespace_get(self, it, namespace, name):
        if namespace == "global":
            return self.global_vars.get(name, "")
        if namespace == "env":
            from .extensions.environment import environment_item
            value = environment_item(it, name)
            if value is None and "_" in name:
                # ${env.vnd.dovecot.default_mailbox}: "-" cannot be written there.
                value = environment_item(it, name.replace("_", "-"))
            return "" if value is None else value
        return ""

    def namespace_set(self, it, namespace, name, value):
        if namespace == "global":
            limit = self.settings.max_variable_size
            if len(value) > limit or not value.isascii():   # a limit in bytes
                from .interpreter import _truncate_utf8
                value = _truncate_utf8(value, limit)
            self.global_vars[name] = value


def run_program(ctx, program):
    """Run one compiled script in ctx; return a status (OK, FAILURE, ...)."""
    if "imap4flags" in program.extensions and not ctx.imap4flags_implicit:
        ctx.imap4flags_implicit = True
        ctx.result.implicit_effects.append(FlagsEffect(None))
    ctx.root_program = program
    ctx.include_stack = []
    interp = Interpreter(ctx, program)
    try:
        interp.run()
    except StopScript:
        pass
    except CpuLimitError as exc:
        ctx.diag.error(exc.location, exc.message)
        return RESOURCE_LIMIT
    except CpuTimeExceeded:
        ctx.diag.error("", "execution exceeded CPU time limit")
        return RESOURCE_LIMIT
    except SieveRunError as exc:
        ctx.diag.error(exc.location, exc.message)
        return TEMP_FAILURE if exc.temporary else FAILURE
    except MemoryLimitExceeded as exc:
        ctx.diag.error(interp.location(), exc.message())
        return RESOURCE_LIMIT
    except MemoryError:
        ctx.diag.error(interp.location(), "execution ran out of memory")
        return RESOURCE_LIMIT
    except RecursionError:
        ctx.diag.error("", "execution exceeded nesting limit")
        return RESOURCE_LIMIT
    except Exception as exc:  # a bug here must not lose or bounce the message
        _internal_error(ctx, interp.location(), exc)
        return FAILURE
    return OK


def _internal_error(ctx, where, exc):
    """Report an unexpected exception: admin log gets the details, the user a note."""
    import traceback
    ctx.diag.error("", "internal error while running the script (details in the "
                   "system log)")
    if ctx.log is not None:
        last = traceback.extract_tb(exc.__traceback__)[-1:] or [None]
        at = "%s:%s" % (last[0].filename, last[0].lineno) if last[0] else "?"
        ctx.log("error", "sieve: internal error at %s in %s: %s: %s"
                % (where, at, type(exc).__name__, exc))


def execute_sequence(ctx, loaders, on_script=None):
    """Run scripts in sequence (Pigeonhole's multiscript).

    loaders: list of (name, load) where load() returns a Program or None (compile
    failed; errors already reported). on_script(name, status) is called after
    each script ran (tool.py prints there). Returns (status, list of names run).
    """
    status = OK
    ran = []
    result = ctx.result
    with cpu_guard(ctx.settings.max_cpu_time) as guard:
        ctx.cpu_deadline = guard.deadline
        for name, load in loaders:
            try:
                program = load()
            except CpuTimeExceeded:
                ctx.diag.error(name, "execution exceeded CPU time limit")
                status = RESOURCE_LIMIT
                break
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                if type(exc).__name__ == "_CompileFailed":
                    raise
                _internal_error(ctx, name, exc)
                status = FAILURE
                break
            if program is None:
                status = FAILURE
                break
            try:
                status = run_program(ctx, program)
            except CpuTimeExceeded:
                ctx.diag.error(name, "execution exceeded CPU time limit")
                status = RESOURCE_LIMIT
            ran.append(name)
            if on_script is not None:
                on_script(name, status)
            if status != OK:
                break
            keep = result.implicit_keep(result.exec_seq) or any(
                a.keep for a in result.actions if a.exec_seq == result.exec_seq)
            result.last_seq = result.exec_seq
            result.exec_seq += 1
            if not keep:
                break
    return status, ran


def _drop_failed_script_actions(result):
    """After a failure, the failing script's actions are not carried out."""
    result.actions = [a for a in result.actions if a.exec_seq < result.exec_seq]


def run(scripts, message, envelope, *, settings=None, mailbox_exists=None, log=None,
        duplicate=None, user=None, user_log=None, global_scripts=None, cache=True,
        discard_script=None, home=None, default_mailbox=None, now=None):
    """Run the delivery's scripts; see the package docstring for the contract.

    now: the delivery's time (seconds since the epoch) for currentdate and the
    date test's defaults; None is the system clock.

    scripts: ordered paths (sieve_before..., the personal script, sieve_after...).
    global_scripts: the subset of scripts that are administrator scripts (their
    errors go to the admin log, and sieve_global_extensions apply to them);
    by default every script but the last one given by the user is treated as
    personal only when it is in the user's home (the caller should say).
    """
    from .script import ScriptNotFoundError, ScriptReadError, load_program, \
        make_env, script_name
    sset = SieveSettings.from_mapping(settings, home)
    if home is not None:
        sset.home = home    # the user's home from the userdb: the cache and ~ use it
    if default_mailbox:
        # dovecot-lda -m: keep and implicit keep file here.
        sset.default_mailbox = default_mailbox
    for problem in sset.problems:
        if log is not None:
            log("warning", "sieve: " + problem)
    global_scripts = set(global_scripts or ())
    # Pigeonhole's LDA keeps at most 30 errors of a compile in the user log.
    from .limits import USER_LOG_MAX_ERRORS
    diag = Diagnostics(max_errors=USER_LOG_MAX_ERRORS)
    ctx = RunContext(message, envelope, sset, diag, mailbox_exists, duplicate,
                     user, log, now=now)
    failed_script = [None]

    def loader(path):
        def load():
            is_global = path in global_scripts
            env = make_env(sset, global_script=is_global)
            before = len(diag.lines)
            try:
                program = load_program(
                    path, env, diag, sset, cache=cache,
                    unsaved=(lambda problem: _admin_uncompiled(path, problem, log))
                    if is_global else None)
            except ScriptNotFoundError:
                return _EMPTY
            except ScriptReadError as exc:
                diag.error(script_name(path), "failed to open script: %s" % exc.strerror)
                program = None
            if program is None:
                failed_script[0] = (path, "compile", diag.lines[before:])
            return program
        return load

    def on_script(name, status):
        if status != OK:
            failed_script[0] = (paths_by_name.get(name, name), "run", None)

    paths_by_name = {script_name(p): p for p in scripts}
    loaders = [(script_name(p), loader(p)) for p in scripts]
    ctx.result.multiscript = True   # Dovecot's LDA runs even one script this way
    status, ran = execute_sequence(ctx, loaders, on_script)
    if status == OK and discard_script and _will_discard(ctx.result):
        # sieve_discard: a last chance for a message nothing delivered.
        ctx.result.multiscript = False
        paths_by_name[script_name(discard_script)] = discard_script
        global_scripts.add(discard_script)
        status, more = execute_sequence(
            ctx, [(script_name(discard_script), loader(discard_script))], on_script)
        ran += more
        ctx.result.discard_run = True
    res = SieveResult()
    res.status = status
    res.scripts_run = ran
    result = ctx.result
    if status != OK:
        _drop_failed_script_actions(result)
    data = result.to_dict()
    res.actions = data["actions"]
    res.implicit_keep = data["implicit_keep"] if status == OK else True
    res.implicit_keep_mailbox = result.default_mailbox
    res.implicit_keep_flags = data.get("implicit_keep_flags", []) if status == OK else []
    res.errors = diag.error_lines()
    res.warnings = [line for line in diag.lines if ": warning: " in line]
    if ctx.message.edited:
        res.header_fields = ctx.message.fields()
    _report(failed_script[0], diag, status, global_scripts, user_log, log)
    return res


# Administrator's scripts already reported as compiled per delivery (a long-lived
# process, mailslot-lmtpd, says it once per script; at most the configured scripts).
_REPORTED_UNCOMPILED = set()


def _admin_uncompiled(path, problem, log):
    """An administrator's script had no fresh compiled form and this delivery could
    not save one (only root may write a cache deliveries trust): say so once, at
    error level as Pigeonhole does, with the command that ends it."""
    if log is None or path in _REPORTED_UNCOMPILED:
        return
    _REPORTED_UNCOMPILED.add(path)
    log("error", f"sieve: administrator's script {path} is compiled for every delivery "
                 f"({problem}): compile it once as root after each change: mailslot "
                 f"sievec -c <the deliveries' settings file> {path}")


def _expand_sequence(value, home):
    """sieve_before/after: a script, or a directory of *.sieve in byte order."""
    if not value:
        return []
    _, path = parse_location(value, home)
    directory, _ = parse_location(value, home)
    target = path or directory
    if target is None:
        return []
    if os.path.isdir(target):
        try:
            names = sorted((n for n in os.listdir(target) if n.endswith(".sieve")),
                           key=lambda n: n.encode("utf-8", "surrogateescape"))
        except OSError:
            return []
        return [os.path.join(target, n) for n in names
                if os.path.isfile(os.path.join(target, n))]
    return [target]


def delivery_scripts(settings, home):
    """The scripts a delivery runs, as Pigeonhole picks them.

    Returns a dict: scripts (ordered paths), global_scripts (the
    administrator's: sieve_before*, sieve_after*, sieve_default), personal (the
    user's active script or None), discard (sieve_discard or None), sieve_dir
    (for :personal includes) and user_log (where the user's errors go).
    """
    get = settings.get if settings is not None else (lambda key, default=None: None)
    before = []
    for key in ("sieve_before", "sieve_before2", "sieve_before3"):
        before += _expand_sequence(get(key) or "", home)
    after = []
    for key in ("sieve_after", "sieve_after2", "sieve_after3"):
        after += _expand_sequence(get(key) or "", home)
    storage, active = parse_location(
        get("sieve") if get("sieve") is not None else
        "file:~/sieve;active=~/.dovecot.sieve", home)
    personal = None
    if active is not None and os.path.isfile(active):
        # why: the active script is usually a symlink into the storage
        # directory; Pigeonhole follows it, and so do we (os.path.isfile does).
        personal = active
    default = get("sieve_default") or ""
    global_scripts = set(before) | set(after)
    if personal is None and default:
        _, dpath = parse_location(default, home)
        if dpath and os.path.isfile(dpath):
            personal = dpath
            global_scripts.add(dpath)
    discard = None
    if get("sieve_discard"):
        _, discard = parse_location(get("sieve_discard"), home)
    scripts = before + ([personal] if personal else []) + after
    user_log = get("sieve_user_log") or None
    if user_log:
        user_log = _expand_home(user_log, home)
        if not user_log.startswith("/") and home:
            user_log = os.path.join(home, user_log)
    elif personal and personal not in global_scripts:
        user_log = user_log_path(personal)
    return {"scripts": scripts, "global_scripts": global_scripts,
            "personal": personal, "discard": discard, "sieve_dir": storage,
            "user_log": user_log}


def _will_discard(result):
    from .result import DiscardAction, KeepAction, RedirectAction, StoreAction
    if result.to_dict()["implicit_keep"]:
        return False
    del DiscardAction
    return not any(isinstance(a, (KeepAction, RedirectAction, StoreAction))
                   for a in result.actions)


class _EmptyProgram:
    name = ""
    ops = []
    extensions = []
    includes = {}
    deps = []


_EMPTY = _EmptyProgram()


def user_log_path(script_path, user_log=None):
    """Where a personal script's errors go: sieve_user_log, or the script's path
    with ".log" added (Pigeonhole: ~/.dovecot.sieve -> ~/.dovecot.sieve.log)."""
    if user_log:
        return user_log
    return script_path + ".log"


def _report(failed, diag, status, global_scripts, user_log, log):
    if not diag.lines or failed is None:
        return
    from .diagnostics import write_user_log
    path, phase, _ = failed
    if path in global_scripts or log is None and user_log is None:
        if log is not None:
            for line in diag.lines:
                log("error", "sieve: " + line)
        return
    logfile = user_log_path(path, user_log)
    write_user_log(logfile, diag.lines,
                   (lambda msg: log("error", msg)) if log else None)
    if log is None:
        return
    if phase == "compile":
        log("error", "sieve: failed to compile script `%s' (view user logfile `%s' "
            "for more information)" % (path, logfile))
    else:
        log("error", "sieve: Execution of script %s failed, but implicit keep was "
            "successful (user logfile %s may reveal additional details)"
            % (path, logfile))
    if status == RESOURCE_LIMIT:
        log("error", "sieve: resource limit exceeded running %s" % path)


__all__ = ["run", "SieveResult", "Envelope", "execute_sequence", "RunContext",
           "run_program", "os"]

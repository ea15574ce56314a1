"""What the vnd.dovecot.testsuite commands do at run time.

Importing this module registers the handlers (interpreter.HANDLERS / TESTS) of
the ops commands.py compiles. The state of one test file is a Suite, reached as
ctx.suite from the run context (TestContext, a RunContext that also answers
${tst.path}). Semantics follow Pigeonhole 0.5.19's testsuite tool:

- `test "name" {...}` runs its block; test_fail ends it FAILED with a reason,
  reaching the end is SUCCEEDED. A run-time error inside a block fails that
  block (Pigeonhole would abort the whole file; going on reports more).
- test_set "message" replaces the message and derives the envelope from its
  header (Return-Path/Sender/From, Envelope-To/To), as sieve-test does;
  test_set "envelope.*" sets one part.
- The main script, test_script_run and test_result_* share one result;
  test_result_reset (and test_script_run without :append_result) starts a new
  one. test_result_execute carries it out into an in-memory mail store
  (test_message :folder reads it back) and captures outgoing mail
  (test_message :smtp N).
- test_error matches the error messages (without location) of the last
  test_script_compile / test_script_run / test_result_execute /
  test_multiscript; test_result_action matches the result's action names.

Errors: Skip(reason) marks a block SKIPPED (a feature mailslot does not have,
named in the reason); TestFailed(reason) fails it.
"""

import os

from ..sieve.address import AddressError, parse_path
from .paths import parse_envelope_path
from ..sieve.diagnostics import Diagnostics
from ..sieve.interpreter import HANDLERS, TESTS, SieveRunError, StopScript
from ..sieve.mail import MessageView, RawMessage
from ..sieve.match import match
from ..sieve.result import KeepAction, Result
from ..sieve.runner import OK, RunContext, run_program

EXTENSION = "vnd.dovecot.testsuite"

# Pigeonhole's testsuite default message (testsuite-message.c).
DEFAULT_MESSAGE = (b"From: sender@example.com\nTo: recipient@example.org\n"
                   b"Subject: Frop!\n\nFriep!\n")



class TestFailed(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class Skip(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class CapturingDiagnostics(Diagnostics):
    """Diagnostics that also keep each error's bare message (for test_error)."""

    def __init__(self, sink=None):
        super().__init__(max_errors=0, sink=sink)
        self.messages = []

    def error(self, location, message):
        self.messages.append(message)
        super().error(location, message)

    def clear(self):
        self.messages = []
        self.lines = []
        self.errors = 0
        self.warnings = 0


class Outgoing:
    """A captured outgoing message (composed by mailslot's send package)."""

    def __init__(self, kind, sender, recipient, data):
        self.kind = kind
        self.sender = sender
        self.recipient = recipient
        self.data = data


class Block:
    """One test block's outcome."""

    def __init__(self, index, name, line):
        self.index = index
        self.name = name
        self.line = line
        self.status = None     # "SUCCEEDED", "FAILED", "SKIPPED"
        self.reason = ""


class Suite:
    """The state of one .svtest file's run."""

    def __init__(self, path, conf, user, out):
        self.path = path
        self.dir = os.path.dirname(os.path.abspath(path))
        self.conf = dict(conf)
        self.user = user
        self.out = out                  # where progress lines go (or None)
        self.blocks = []
        self.current = None
        self.case_failures = []         # failures outside blocks
        self.log = CapturingDiagnostics()
        self.compiled = None
        self.binaries = {}
        self.folders = {"INBOX": []}
        self.outbox = []
        self.executed = set()
        self.implicit_done = False
        self.ctx = None

    # -- blocks -------------------------------------------------------------------

    def begin(self, name, line):
        block = Block(len(self.blocks) + 1, name, line)
        self.blocks.append(block)
        self.current = block
        return block

    def end(self, status, reason=""):
        block = self.current
        self.current = None
        if block is None:
            return
        block.status = status
        block.reason = reason
        if self.out is not None:
            text = "%2d: Test '%s' %s" % (block.index, block.name, status)
            self.out.write(text + (": " + reason if reason else "") + "\n")

    # -- messages and envelope ------------------------------------------------------

    def set_message(self, data, envelope=None):
        """Make data the current message; the envelope comes from its header
        unless given as (sender, recipient) (test_message :smtp gives the
        captured envelope; a sender None is <>)."""
        from ..sieve.runner import Envelope
        from ..sieve.tool import default_envelope
        ctx = self.ctx
        raw = RawMessage(data)
        ctx.message = MessageView(raw)
        ctx.address_cache = {}
        env_from, env_to, env_orig = default_envelope(raw)
        if envelope is not None:
            env_from, env_to = envelope
            env_orig = env_to
        ctx.envelope = Envelope(env_from, env_to, env_orig, self.user)

    def message_bytes(self, snapshot=None):
        """The current message as bytes: as an action's header snapshot (see
        sieve/mail.py HeaderSnapshot) left it, else with the edits so far."""
        view = self.ctx.message
        if snapshot is None and view.edited:
            snapshot = view.snapshot()
        if snapshot is None:
            return view.raw_bytes()
        return b"".join(p if isinstance(p, bytes) else p[0][p[1]:p[2]]
                        for p in snapshot.pieces())

    # -- mail store -----------------------------------------------------------------

    def _folder_key(self, name):
        if name.upper() == "INBOX":
            return "INBOX"
        if name[:6].upper() == "INBOX.":
            return "INBOX" + name[5:]
        return name

    def mailbox_exists(self, name):
        return self._folder_key(name) in self.folders

    def create_mailbox(self, name):
        self.folders.setdefault(self._folder_key(name), [])

    def store(self, name, data, flags=(), create=False):
        """File data (with IMAP flags) into a mailbox of the in-memory store;
        False (with the error in the log) when it cannot be, as Dovecot's
        Maildir with "." as separator would refuse it."""
        from ..errors import MailboxNameError
        from ..mailbox_name import split_mailbox_name
        try:
            split_mailbox_name(name, prefix="", separator=".")
            if "/" in name:
                raise MailboxNameError("'/' is not allowed in a mailbox name")
        except MailboxNameError as exc:
            self.log.error("", "failed to store into mailbox '%s': Invalid mailbox "
                           "name: %s" % (name, exc))
            return False
        key = self._folder_key(name)
        if key not in self.folders:
            if not create:
                self.log.error("", "failed to store into mailbox '%s': "
                               "Mailbox doesn't exist: %s" % (name, name))
                return False
            self.folders[key] = []
        self.folders[key].append((data, list(flags)))
        return True

    # -- the result -----------------------------------------------------------------

    def new_result(self):
        s = self.ctx.settings
        return Result(s.default_mailbox, s.max_actions, s.max_redirects)

    def reset_result(self, it):
        ctx = self.ctx
        ctx.result = self.new_result()
        ctx.imap4flags_implicit = False
        self.executed = set()
        self.implicit_done = False
        while it is not None:
            it.result = ctx.result
            it = it.parent

    def action_names(self):
        names = []
        for action in self.ctx.result.actions:
            if action.kind == "duplicate_mark":
                continue
            keep = isinstance(action, KeepAction) or getattr(action, "keep", False)
            names.append("keep" if keep else action.kind)
        return names

    def execute_result(self):
        """Carry out the result's actions not yet executed, then implicit keep."""
        self.log.clear()
        result = self.ctx.result
        ok = True
        keep_done = False
        for action in result.actions:
            if id(action) in self.executed:
                continue
            self.executed.add(id(action))
            d = action.to_dict(result)
            effects = {}
            for effect in action.effects:
                ed = effect.to_dict(result)
                effects[ed["type"]] = ed
            flags = effects.get("flags", {}).get("flags", ())
            kind = d["type"]
            if kind in ("store", "keep"):
                keep_done = keep_done or kind == "keep"
                data = self.message_bytes(d.get("edited_header"))
                if not self.store(d["mailbox"], data, flags, create="create" in effects):
                    ok = False
            elif kind in ("redirect", "reject", "vacation", "notify"):
                self.send(kind, d, action)
        if not ok and not self.implicit_done:
            # A failed action: the implicit keep of the message as it came,
            # without the script's edits or flags (Pigeonhole's failure keep).
            self.implicit_done = True
            self.store(result.default_mailbox, self.ctx.message.raw_bytes())
        elif not keep_done and not self.implicit_done and result.implicit_keep(None):
            self.implicit_done = True
            flags = []
            for effect in result.implicit_effects:
                if effect.name == "flags":
                    flags = list(effect.resolve(result))
            self.store(result.default_mailbox, self.message_bytes(), flags)
        result.last_seq = result.exec_seq
        result.exec_seq += 1
        return ok

    def send(self, kind, d, action):
        """Compose what an action sends with mailslot's outgoing-mail code and
        capture it (one outbox entry per recipient, as Pigeonhole's testsuite)."""
        import io
        from ..send.compose import Original
        from ..send.outgoing import OutgoingMail
        from ..send.transport import CaptureTransport
        env = self.ctx.envelope
        to = _path(env.recipient)
        transport = CaptureTransport()
        out = OutgoingMail(self.conf, log=_Log(self.log), transport=transport,
                           clock=lambda: self.ctx.now, hostname=TEST_HOSTNAME,
                           envelope={"from": _path(env.sender), "to": to,
                                     "orig_to": _path(env.orig_recipient) or to},
                           user_address=self.conf.get("sieve_user_email") or to,
                           dry_run=True)
        data = self.message_bytes(d.get("edited_header"))
        original = Original.from_message(RawMessage(data))
        if kind == "redirect":
            if out.redirect_loop(original, d["address"]) is None:
                out.redirect(original, io.BytesIO(data), d["address"])
        elif kind == "reject":
            out.reject(original, d["reason"])
        elif kind == "vacation":
            out.vacation(original, d)
        else:
            out.notify(original, d)
        for sender, recipients, message in transport.sent:
            for rcpt in recipients:
                self.outbox.append(Outgoing(kind, _addr(sender), _addr(rcpt), message))

    # -- scripts --------------------------------------------------------------------

    def env(self):
        from ..sieve.program import Resolver
        from ..sieve.script import make_env
        s = self.ctx.settings
        return make_env(s, enabled=self.ctx.enabled_extensions,
                        include=Resolver(s.sieve_dir, s.global_dir))

    def compile(self, relpath):
        from ..sieve.script import ScriptNotFoundError, compile_file
        self.log.clear()
        path = os.path.join(self.dir, relpath)
        try:
            program, _ = compile_file(path, self.env(), self.log,
                                      self.ctx.settings.max_script_size)
        except ScriptNotFoundError as exc:
            self.log.error(os.path.basename(relpath), "failed to open script: %s"
                           % exc.strerror)
            return False
        if program is None:
            return False
        self.compiled = program
        return True

    def run_compiled(self, it):
        if self.compiled is None:
            self.log.error("", "testsuite: trying to run script, but no script "
                           "compiled yet")
            return False
        self.log.clear()
        status = self.run_isolated(self.compiled)
        return status == OK or EXTENSION in self.compiled.extensions

    def run_isolated(self, program):
        """Run a compiled script in the shared context, keeping the caller's
        per-script state (the running test script is still going)."""
        from ..sieve.cpu import cpu_guard
        ctx = self.ctx
        saved = (ctx.root_program, ctx.include_stack, ctx.global_vars,
                 ctx.included, ctx.include_depth, ctx.diag, ctx.cpu_deadline)
        ctx.global_vars = {}
        ctx.included = set()
        ctx.include_depth = 0
        ctx.diag = self.log
        try:
            with cpu_guard(ctx.settings.max_cpu_time) as guard:
                ctx.cpu_deadline = guard.deadline
                return run_program(ctx, program)
        finally:
            (ctx.root_program, ctx.include_stack, ctx.global_vars, ctx.included,
             ctx.include_depth, ctx.diag, ctx.cpu_deadline) = saved

    def multiscript(self, it, relpaths):
        """test_multiscript: the scripts in sequence with their own result,
        which is then executed (Pigeonhole's sieve_multiscript)."""
        from ..sieve.runner import execute_sequence
        from ..sieve.script import compile_file, script_name
        self.log.clear()
        ctx = self.ctx
        saved = (ctx.result, ctx.imap4flags_implicit, self.executed,
                 self.implicit_done, ctx.diag)
        ctx.result = self.new_result()
        ctx.result.multiscript = True
        ctx.imap4flags_implicit = False
        self.executed = set()
        self.implicit_done = False
        ctx.diag = self.log
        failed = []

        def loader(rel):
            def load():
                path = os.path.join(self.dir, rel)
                try:
                    program, _ = compile_file(path, self.env(), self.log,
                                              ctx.settings.max_script_size)
                except OSError:
                    program = None
                if program is None:
                    failed.append(rel)
                return program
            return (script_name(rel), load)

        try:
            status, _ = execute_sequence(ctx, [loader(r) for r in relpaths])
            if status != OK:
                # The failed script's actions are dropped; implicit keep stays.
                result = ctx.result
                result.actions = [a for a in result.actions
                                  if a.exec_seq < result.exec_seq]
            executed = self.execute_result()
            return status == OK and not failed and executed
        finally:
            (ctx.result, ctx.imap4flags_implicit, self.executed,
             self.implicit_done, ctx.diag) = saved

    # -- settings -------------------------------------------------------------------

    def reload_config(self, it):
        from ..sieve.extensions import subaddress
        from ..sieve.settings import SieveSettings
        ctx = self.ctx
        settings = SieveSettings.from_mapping(self.conf)
        settings.default_mailbox = ctx.settings.default_mailbox
        ctx.settings = settings
        subaddress.set_delimiter(settings.recipient_delimiter)
        while it is not None:
            it.max_variable_size = settings.max_variable_size
            it = it.parent


TEST_HOSTNAME = "testsuite.example.com"


def _path(addr):
    """An envelope Address as text ("" for <>)."""
    if addr is None:
        return ""
    return "%s@%s" % (addr.localpart, addr.domain) if addr.domain else addr.localpart


def _addr(text):
    try:
        return parse_path(text or "")
    except AddressError:
        return None


class _Log:
    """The outgoing-mail log, into the test log (errors are test_error's)."""

    def __init__(self, diag):
        self.diag = diag

    def info(self, text):
        pass

    def warning(self, text):
        self.diag.warning("", text)

    def error(self, text):
        self.diag.error("", text)


class TestContext(RunContext):
    """The run context of a test file: ${tst.path} is the file's directory."""

    suite = None

    def namespace_get(self, it, namespace, name):
        if namespace == "tst":
            return self.suite.dir if name == "path" else ""
        return super().namespace_get(it, namespace, name)


# -- handlers -----------------------------------------------------------------------

def run_test(it, op):
    suite = it.ctx.suite
    if suite.current is not None:
        raise SieveRunError(it.location(), "already inside test block")
    suite.begin(it.expand(op[2]), op[1])
    try:
        it.run_block(op[3])
    except TestFailed as exc:
        suite.end("FAILED", exc.reason)
    except Skip as exc:
        suite.end("SKIPPED", exc.reason)
    except StopScript:
        # stop ends the whole test script; the block did not fail.
        suite.end("SUCCEEDED")
        raise
    except SieveRunError as exc:
        suite.end("FAILED", "run-time error: %s%s" % (
            exc.location + ": " if exc.location else "", exc.message))
    else:
        suite.end("SUCCEEDED")


def run_fail(it, op):
    reason = it.expand(op[2])
    suite = it.ctx.suite
    if suite.current is None:
        suite.case_failures.append("test_fail outside a test block: " + reason)
        raise StopScript()
    raise TestFailed(reason)


def run_set(it, op):
    suite = it.ctx.suite
    obj, value = op[2], it.expand(op[3])
    env = it.ctx.envelope
    if obj == "message":
        suite.set_message(value.encode("utf-8", "surrogateescape"))
        return
    member = obj.split(".", 1)[1]
    if member == "auth":
        env.auth_user = value
        return
    try:
        addr = parse_envelope_path(value, allow_localpart=member != "from",
                                   allow_empty=member == "from")
    except AddressError as exc:
        suite.log.error("", "testsuite: envelope %s address `%s' is invalid: %s"
                        % ("sender" if member == "from" else "recipient", value, exc))
        addr = None
    if member == "from":
        env.sender = addr
    elif member == "to":
        env.recipient = env.orig_recipient = addr
    else:
        env.orig_recipient = addr


def _message(it, op):
    suite = it.ctx.suite
    folder, index = op[3], op[4]
    if folder is None:
        if index >= len(suite.outbox):
            return False, "no outgoing SMTP message with index %d" % index
        msg = suite.outbox[index]
        suite.set_message(msg.data, envelope=(msg.sender, msg.recipient))
        return True, ""
    folder = it.expand(folder)
    key = suite._folder_key(folder)
    mails = suite.folders.get(key, [])
    if index >= len(mails):
        return False, "no message in folder '%s' with index %d" % (folder, index)
    data, flags = mails[index]
    suite.set_message(data)
    # imap4flags starts from the flags the message has in its mailbox.
    it.ctx.result.internal_flags = list(flags)
    return True, ""


def run_message(it, op):
    ok, reason = _message(it, op)
    if not ok:
        raise TestFailed(reason)


def test_message(it, op):
    return _message(it, op)[0]


def run_message_print(it, op):
    out = it.ctx.suite.out
    if out is not None:
        out.write("\n--MESSAGE: \n%s\n--MESSAGE--\n" % it.ctx.message.raw_bytes()
                  .decode("utf-8", "replace"))


def run_result_reset(it, op):
    # The command (not test_script_run's reset) also forgets the sent mail.
    it.ctx.suite.reset_result(it)
    it.ctx.suite.outbox = []


def run_result_print(it, op):
    out = it.ctx.suite.out
    if out is not None:
        out.write("\n--" + "\n".join(it.ctx.result.print_lines()) + "--\n\n")


def test_result_execute(it, op):
    return it.ctx.suite.execute_result()


def test_script_compile(it, op):
    return it.ctx.suite.compile(it.expand(op[2]))


def test_script_run(it, op):
    suite = it.ctx.suite
    if not op[2]:
        suite.reset_result(it)
    return suite.run_compiled(it)


def test_multiscript(it, op):
    return it.ctx.suite.multiscript(it, it.expand_list(op[2]))


def test_error(it, op):
    index, keys, spec = op[2], it.expand_list(op[3]), op[4]
    messages = it.ctx.suite.log.messages
    if index > 0:
        values = messages[index - 1:index]
    else:
        values = list(messages)
    return match(it, spec, values, keys)


def test_result_action(it, op):
    index, keys, spec = op[2], it.expand_list(op[3]), op[4]
    names = it.ctx.suite.action_names()
    values = names[index - 1:index] if index > 0 else names
    return match(it, spec, values, keys)


def run_config_set(it, op):
    it.ctx.suite.conf[it.expand(op[2])] = it.expand(op[3])


def run_config_unset(it, op):
    it.ctx.suite.conf.pop(it.expand(op[2]), None)


def run_config_reload(it, op):
    ext = op[2]
    if ext is not None:
        from ..sieve.extensions import EXTENSIONS
        name = it.expand(ext)
        if name not in EXTENSIONS:
            raise Skip("test_config_reload: extension '%s' is not in mailslot" % name)
    it.ctx.suite.reload_config(it)


def run_mailbox_create(it, op):
    it.ctx.suite.create_mailbox(it.expand(op[2]))


def run_mailbox_delete(it, op):
    suite = it.ctx.suite
    suite.folders.pop(suite._folder_key(it.expand(op[2])), None)


def run_binary_save(it, op):
    from ..sieve.cache import encode, program_to_data
    suite = it.ctx.suite
    if suite.compiled is None:
        raise TestFailed("test_binary_save: no script compiled yet")
    # The compiled form as the compile cache stores it.
    suite.binaries[it.expand(op[2])] = encode(program_to_data(suite.compiled))


def run_binary_load(it, op):
    from ..sieve.cache import decode, program_from_data
    suite = it.ctx.suite
    data = suite.binaries.get(it.expand(op[2]))
    if data is None:
        raise TestFailed("failed to load binary %s" % it.expand(op[2]))
    suite.compiled = program_from_data(decode(data))


def run_imap_metadata_set(it, op):
    raise Skip("IMAP METADATA is out of mailslot's scope")


HANDLERS.update({
    "ts_test": run_test, "ts_fail": run_fail, "ts_set": run_set,
    "ts_message": run_message, "ts_message_print": run_message_print,
    "ts_result_reset": run_result_reset, "ts_result_print": run_result_print,
    "ts_config_set": run_config_set, "ts_config_unset": run_config_unset,
    "ts_config_reload": run_config_reload, "ts_mailbox_create": run_mailbox_create,
    "ts_mailbox_delete": run_mailbox_delete, "ts_binary_save": run_binary_save,
    "ts_binary_load": run_binary_load, "ts_imap_metadata_set": run_imap_metadata_set,
})
TESTS.update({
    "ts_message": test_message, "ts_result_execute": test_result_execute,
    "ts_script_compile": test_script_compile, "ts_script_run": test_script_run,
    "ts_multiscript": test_multiscript, "ts_error": test_error,
    "ts_result_action": test_result_action,
})

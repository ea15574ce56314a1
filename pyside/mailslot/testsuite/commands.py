"""The vnd.dovecot.testsuite commands and tests, as the validator sees them.

load(v, name) registers them in a Validator (sieve/validator.py), like any
extension module's load(). Each definition checks its arguments the way
Pigeonhole's testsuite does (argument counts and types, the testsuite objects
test_set knows, exactly one of :smtp / :folder for test_message) and compiles
to an op tuple ("ts_<what>", line, ...) that runtime.py carries out.

test_message is a command and a test (Pigeonhole's "hybrid"): as a command a
missing message fails the test block, as a test it is false. HYBRID below is
the is_test value that the validator accepts in both places.

Errors: reported to the validator (v.error) with Pigeonhole-style messages.
"""

from ..sieve import syntax as S
from ..sieve.defs import CommandDef, TagDef
from ..sieve.extensions.match_tags import COMPARATOR_TAG, MATCH_TYPE_TAG, match_spec
from ..sieve.diagnostics import sanitize

# test_set's objects (Pigeonhole testsuite-objects.c): the message, and the
# envelope members.
OBJECTS = ("message", "envelope.from", "envelope.to", "envelope.orig_to",
           "envelope.auth")


class _Hybrid:
    """is_test for a command that is also a test: equal to both True and False."""

    def __eq__(self, other):
        return isinstance(other, bool)

    def __ne__(self, other):
        return not isinstance(other, bool)

    def __bool__(self):
        return True

    __hash__ = object.__hash__


HYBRID = _Hybrid()


class _Simple(CommandDef):
    """A command or test whose positional arguments are all of given types."""

    arg_types = ()
    arg_names = ()
    op = ""

    def __init__(self):
        self.positional = len(self.arg_types)

    def validate(self, v, node):
        values = []
        for pos, (arg, kind) in enumerate(zip(node.positional, self.arg_types), 1):
            name = self.arg_names[pos - 1] if self.arg_names else "argument"
            value = v.positional_value(node, arg, name, pos, kind)
            if value is None:
                return False
            values.append(value)
        node.data = values
        return self.check(v, node, values)

    def check(self, v, node, values):
        return True

    def compile(self, c, node):
        return (self.op, node.line) + tuple(node.data) + self.extra(node)

    def extra(self, node):
        return ()


class TestBlock(CommandDef):
    name = "test"
    positional = 1
    block_allowed = True
    block_required = True

    def validate(self, v, node):
        value = v.positional_value(node, node.positional[0], "test name", 1, S.STRING)
        if value is None:
            return False
        node.data = value
        return True

    def compile(self, c, node):
        return ("ts_test", node.line, node.data, c.block(node.block or []))


class TestFail(_Simple):
    name = "test_fail"
    arg_types = (S.STRING,)
    arg_names = ("reason",)
    op = "ts_fail"


class TestSet(_Simple):
    name = "test_set"
    arg_types = (S.STRING, S.STRING)
    arg_names = ("object", "value")
    op = "ts_set"

    def check(self, v, node, values):
        obj = values[0]
        if not isinstance(obj, str):
            v.error(node.line, "testsuite object name must be a literal string")
            return False
        if obj.lower() not in OBJECTS:
            if obj.lower().split(".", 1)[0] == "envelope":
                v.error(node.line, "member '%s' does not exist for testsuite object "
                        "'envelope'" % sanitize(obj.split(".", 1)[1], 80))
            else:
                v.error(node.line, "unknown testsuite object '%s'"
                        % sanitize(obj.split(".", 1)[0], 80))
            return False
        values[0] = obj.lower()
        return True


class _FolderTag(TagDef):
    identifier = "folder"
    id_code = 1

    def validate(self, v, node, args, i):
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, args[i], param, None, 0, S.STRING):
            return None
        value = v.activate(node, param)
        if value is None:
            return None
        node.tags["folder"] = value
        return i + 2


class _SmtpTag(TagDef):
    identifier = "smtp"
    id_code = 1


class _IndexTag(TagDef):
    identifier = "index"

    def validate(self, v, node, args, i):
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, args[i], param, None, 0, S.NUMBER):
            return None
        node.tags["index"] = param.value
        return i + 2


class _ValueTag(TagDef):
    """A tag with one string parameter (test_config_reload :extension,
    test_imap_metadata_set :mailbox)."""

    def __init__(self, ident):
        self.identifier = ident

    def validate(self, v, node, args, i):
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, args[i], param, None, 0, S.STRING):
            return None
        value = v.activate(node, param)
        if value is None:
            return None
        node.tags[self.identifier] = value
        return i + 2


class _FlagTag(TagDef):
    def __init__(self, ident):
        self.identifier = ident


class TestMessage(CommandDef):
    name = "test_message"
    is_test = HYBRID
    positional = 1

    def registered(self, v, reg):
        v.register_tag(reg, _FolderTag())
        v.register_tag(reg, _SmtpTag())

    def validate(self, v, node):
        smtp = "smtp" in node.tags
        folder = node.tags.get("folder")
        if smtp == (folder is not None):
            v.error(node.line, "the test_message %s requires either the :smtp or "
                    "the :mailbox tag to be specified" % node.kind_name())
            return False
        index = v.positional_value(node, node.positional[0], "index", 1, S.NUMBER)
        if index is None:
            return False
        node.data = (folder, index)
        return True

    def compile(self, c, node):
        return ("ts_message", node.line, bool(node.is_test)) + node.data


class TestMessagePrint(_Simple):
    name = "test_message_print"
    op = "ts_message_print"


class TestResultReset(_Simple):
    name = "test_result_reset"
    op = "ts_result_reset"


class TestResultPrint(_Simple):
    name = "test_result_print"
    op = "ts_result_print"


class TestResultExecute(_Simple):
    name = "test_result_execute"
    is_test = True
    op = "ts_result_execute"


class TestScriptCompile(_Simple):
    name = "test_script_compile"
    is_test = True
    arg_types = (S.STRING,)
    arg_names = ("script",)
    op = "ts_script_compile"


class TestScriptRun(_Simple):
    name = "test_script_run"
    is_test = True
    op = "ts_script_run"

    def registered(self, v, reg):
        v.register_tag(reg, _FlagTag("append_result"))

    def extra(self, node):
        return ("append_result" in node.tags,)


class TestMultiscript(_Simple):
    name = "test_multiscript"
    is_test = True
    arg_types = (S.STRING_LIST,)
    arg_names = ("scripts",)
    op = "ts_multiscript"


class _LogMatch(CommandDef):
    """test_error and test_result_action: [MATCH-TYPE] [COMPARATOR] [:index n]
    key-list, matched against the error log or the result's action names with
    i;octet and :is by default."""

    is_test = True
    positional = 1
    op = ""

    def registered(self, v, reg):
        v.register_tag(reg, COMPARATOR_TAG)
        v.register_tag(reg, MATCH_TYPE_TAG)
        v.register_tag(reg, _IndexTag())

    def validate(self, v, node):
        arg = node.positional[0]
        keys = v.positional_value(node, arg, "key list", 2, S.STRING_LIST)
        if keys is None:
            return False
        spec = match_spec(v, node, keys, arg, default_cmp="i;octet")
        if spec is None:
            return False
        node.data = (node.tags.get("index", 0), keys, spec)
        return True

    def compile(self, c, node):
        return (self.op, node.line) + node.data


class TestError(_LogMatch):
    name = "test_error"
    op = "ts_error"


class TestResultAction(_LogMatch):
    name = "test_result_action"
    op = "ts_result_action"


class TestConfigSet(_Simple):
    name = "test_config_set"
    arg_types = (S.STRING, S.STRING)
    arg_names = ("setting", "value")
    op = "ts_config_set"


class TestConfigUnset(_Simple):
    name = "test_config_unset"
    arg_types = (S.STRING,)
    arg_names = ("setting",)
    op = "ts_config_unset"


class TestConfigReload(_Simple):
    name = "test_config_reload"
    op = "ts_config_reload"

    def registered(self, v, reg):
        v.register_tag(reg, _ValueTag("extension"))

    def extra(self, node):
        return (node.tags.get("extension"),)


class TestMailboxCreate(_Simple):
    name = "test_mailbox_create"
    arg_types = (S.STRING,)
    arg_names = ("mailbox",)
    op = "ts_mailbox_create"


class TestMailboxDelete(_Simple):
    name = "test_mailbox_delete"
    arg_types = (S.STRING,)
    arg_names = ("mailbox",)
    op = "ts_mailbox_delete"


class TestBinarySave(_Simple):
    name = "test_binary_save"
    arg_types = (S.STRING,)
    arg_names = ("binary-name",)
    op = "ts_binary_save"


class TestBinaryLoad(_Simple):
    name = "test_binary_load"
    arg_types = (S.STRING,)
    arg_names = ("binary-name",)
    op = "ts_binary_load"


class TestImapMetadataSet(_Simple):
    name = "test_imap_metadata_set"
    arg_types = (S.STRING, S.STRING)
    arg_names = ("annotation", "value")
    op = "ts_imap_metadata_set"

    def registered(self, v, reg):
        v.register_tag(reg, _ValueTag("mailbox"))


DEFINITIONS = (TestBlock, TestFail, TestSet, TestMessage, TestMessagePrint,
               TestResultReset, TestResultPrint, TestResultExecute,
               TestScriptCompile, TestScriptRun, TestMultiscript, TestError,
               TestResultAction, TestConfigSet, TestConfigUnset, TestConfigReload,
               TestMailboxCreate, TestMailboxDelete, TestBinarySave, TestBinaryLoad,
               TestImapMetadataSet)


def _tst_namespace(v, elements, line, assign):
    """${tst.path}: the directory of the test file (read only)."""
    if len(elements) != 2 or not isinstance(elements[1], str):
        v.error(line, "testsuite: invalid variable name within testsuite namespace")
        return None
    if assign:
        v.error(line, "testsuite: cannot assign to testsuite variable 'tst.%s'"
                % elements[1])
        return None
    return ("n", "tst", elements[1].lower())


def load(v, name):
    for definition in DEFINITIONS:
        v.register_command(definition(), name)
    v.namespaces["tst"] = _tst_namespace
    return True

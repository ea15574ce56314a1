"""The Sieve validator: checks a syntax tree, then has it compiled to a Program.

Validator(name, diag, env).run(tree) checks every command and test the way
Pigeonhole's validator does -- the same order, the same messages, the same
"reported only once" rules, the same constant folding of true/false that leaves
the blocks of `if false` unchecked -- and then hands the checked tree to
compiler.Compiler, which returns the ops: nested lists (or tuples), dicts,
strings and numbers -- JSON data -- that the interpreter runs and cache.py can
store. run() wraps them in a Program.

Definitions: a command or test is a CommandDef subclass (in extensions/); its tags
are TagDef objects. An extension module registers them when a script requires it
(`load(v, name)`), so a command is unknown until its extension is required, as in
Pigeonhole.

Compiled strings: a plain str, or a template {"$": [parts...]} when the variables
extension is active and the string contains a substitution; each part is a str
or ["v", name] / ["m", index] / ["n", namespace, name]. interpreter.expand()
turns a template into a str.

Errors: every problem is reported to diag; run() returns None if there was any
error. Nothing here raises for bad input.
"""

from . import syntax as S
from .defs import (CommandDef, Registration, TagDef,  # noqa: F401 (re-exported)
                   parse_variable_name, valid_variable_identifier)
from .diagnostics import sanitize
from .program import Program, ValidationEnv  # noqa: F401 (re-exported)

CORE_COMMANDS = ("require", "stop", "if", "elsif", "else", "keep", "discard",
                 "redirect")
CORE_TESTS = ("address", "header", "exists", "size", "not", "anyof", "allof",
              "true", "false")


_UNKNOWN = CommandDef()
_UNKNOWN_TAG = TagDef()


class Validator:
    def __init__(self, name, diag, env):
        from .extensions import load_extension_module
        self.name = name
        self.diag = diag
        self.env = env
        self.commands = {}
        self.loaded = {}        # extension name -> [required, arg]
        self.ext_context = {}   # extension name -> free-form context
        self.finished_require = False
        self._load_module = load_extension_module
        self.includes = {}
        self.deps = []
        self.variables = None   # set of declared variable names once variables loads
        self.namespaces = {}    # namespace name -> handler
        self.match_types = {"is": None, "contains": None, "matches": None}
        self.address_parts = {"all": None, "localpart": None, "domain": None}
        self.comparators = {"i;octet", "i;ascii-casemap"}
        self.string_layers = []  # functions applied to constant strings
        self.post_validators = []  # (ext, fn) run at the end of the require section
        self._block_stack = []
        self.globals = set()      # variables declared `global` (include)
        self.script_path = None
        core = self._load_module("core")
        core.load_core(self)

    # -- reporting -----------------------------------------------------------------

    def location(self, line):
        return f"{self.name}: line {line}" if line else self.name

    def error(self, line, msg):
        self.diag.error(self.location(line), msg)

    def warning(self, line, msg):
        self.diag.warning(self.location(line), msg)

    def more_allowed(self):
        return self.diag.more_allowed()

    # -- registration --------------------------------------------------------------

    def registration(self, name, create=True):
        key = name.lower()
        reg = self.commands.get(key)
        if reg is None and create:
            reg = self.commands[key] = Registration()
        return reg

    def register_command(self, definition, ext=None):
        reg = self.registration(definition.name)
        reg.definition = definition
        reg.ext = ext
        definition.registered(self, reg)
        return reg

    def register_tag(self, reg, tag):
        if tag.instanced:
            reg.instanced.append(tag)
        else:
            reg.tags.append((tag.identifier.lower(), tag))

    def register_external_tag(self, command, tag):
        self.register_tag(self.registration(command), tag)

    def register_persistent_tag(self, command, tag):
        reg = self.registration(command)
        if tag not in reg.persistent:
            reg.persistent.append(tag)

    def find_tag(self, node, ident):
        reg = node.registration
        low = ident.lower()
        for name, tag in reg.tags:
            if name == low:
                return tag, None
        for tag in reg.instanced:
            data = tag.is_instance_of(self, node, ident)
            if data is not None:
                return tag, data
        return None, None

    # -- extensions ------------------------------------------------------------------

    def extension_loaded(self, name):
        return name in self.loaded

    def load_extension(self, name, node=None, arg=None, required=True):
        """Load an enabled extension (require); False (with an error) if it fails."""
        from .extensions import EXTENSIONS
        info = EXTENSIONS.get(name)
        if info is None:
            return False
        if name in self.loaded:
            entry = self.loaded[name]
            entry[0] = entry[0] or required
            return True
        module = self._load_module(info[0])
        if getattr(module, "GLOBAL_ONLY", ()) and name in module.GLOBAL_ONLY \
                and not self.env.global_script:
            prefix = "" if node is None else f"{node.name} {node.kind_name()}: "
            self.error(arg.line if arg else 0,
                       "%sfailed to load Sieve capability `%s': its use is "
                       "restricted to global scripts" % (prefix, name))
            return False
        self.loaded[name] = [required, arg]
        if not module.load(self, name):
            prefix = "" if node is None else f"{node.name} {node.kind_name()}: "
            self.error(arg.line if arg else 0,
                       "%sfailed to load Sieve capability `%s'" % (prefix, name))
            return False
        return True

    def require_by_name(self, node, arg_line, ext_name):
        from .extensions import EXTENSIONS
        known = ext_name in EXTENSIONS and ext_name in self.env.enabled
        if not known:
            low = ext_name.lower()
            core_cmd = low in CORE_COMMANDS
            core_test = low in CORE_TESTS
            if core_cmd or core_test:
                self.error(arg_line,
                           "%s %s: `%s' is not known as a Sieve capability, but it is "
                           "known as a Sieve %s that is always available"
                           % (node.name, node.kind_name(), sanitize(ext_name, 128),
                              "test" if core_test else "command"))
            else:
                self.error(arg_line, "%s %s: unknown Sieve capability `%s'"
                           % (node.name, node.kind_name(), sanitize(ext_name, 128)))
            return False
        return self.load_extension(ext_name, node, _LineArg(arg_line))

    # -- argument helpers ------------------------------------------------------------

    def check_positional(self, node, arg, arg_name, pos, req_type):
        if arg.kind != req_type and not (arg.kind == S.STRING and
                                         req_type == S.STRING_LIST):
            self.error(arg.line,
                       "the %s %s expects %s as argument %d (%s), but %s was found"
                       % (node.name, node.kind_name(), S.TYPE_NAMES[req_type], pos,
                          arg_name, arg.type_name()))
            return False
        return True

    def positional_value(self, node, arg, arg_name, pos, req_type):
        """Check a positional argument's type and compile it; None when refused.

        Both refusals are reported. A STRING_LIST argument comes back as a list (a
        single string as a list of one), any other as activate() returns it.
        """
        if not self.check_positional(node, arg, arg_name, pos, req_type):
            return None
        if req_type == S.STRING_LIST:
            return self.activate_list(node, arg)
        return self.activate(node, arg)

    def tag_parameter(self, node, tag_arg, param, arg_name, pos, req_type):
        """Check the parameter of a tag: present and of the required type."""
        position = "" if pos == 0 else " %d (%s)" % (pos, arg_name)
        if param is None:
            self.error(tag_arg.line,
                       "the :%s tag for the %s %s requires %s as parameter%s, "
                       "but no parameters were found"
                       % (tag_arg.value, node.name, node.kind_name(),
                          S.TYPE_NAMES[req_type], position))
            return False
        if param.kind != req_type and not (param.kind == S.STRING and
                                           req_type == S.STRING_LIST):
            self.error(param.line,
                       "the :%s tag for the %s %s requires %s as parameter%s, "
                       "but %s was found"
                       % (tag_arg.value, node.name, node.kind_name(),
                          S.TYPE_NAMES[req_type], position, param.type_name()))
            return False
        return True

    def activate(self, node, arg, constant=False):
        """Compile an argument's value: number, string (template) or list of them.

        Returns None when a substitution in it is invalid (reported).
        """
        if arg.kind == S.NUMBER:
            return arg.value
        if arg.kind == S.STRING:
            return self.compile_string(arg.value, arg.line, constant)
        if arg.kind == S.STRING_LIST:
            out = []
            for item, line in zip(arg.items, arg.item_lines):
                value = self.compile_string(item, line, constant)
                if value is None:
                    return None
                out.append(value)
            return out
        return None

    def activate_list(self, node, arg, constant=False):
        """Like activate(), but a single string comes back as a list of one."""
        value = self.activate(node, arg, constant)
        if value is None or isinstance(value, list):
            return value
        return [value]

    def compile_string(self, text, line, constant=False):
        for layer in self.string_layers:
            text = layer(self, text, line)
            if text is None:
                return None
        if self.variables is not None and not constant and "${" in text:
            from .extensions.variables import compile_template
            return compile_template(self, text, line)
        return text

    # -- validation ----------------------------------------------------------------

    def command_context(self, node):
        reg = self.commands.get(node.name.lower())
        if reg is not None and reg.definition is not None:
            d = reg.definition
            if d is _UNKNOWN:
                return False
            if d.is_test != node.is_test:
                self.error(node.line, "attempted to use %s '%s' as %s"
                           % (d.type_name(), node.name, node.kind_name()))
                return False
            node.definition = d
            node.registration = reg
            return True
        self.error(node.line, "unknown %s '%s' (only reported once at first occurrence)"
                   % (node.kind_name(), node.name))
        if reg is None:
            reg = self.registration(node.name)
        reg.definition = _UNKNOWN
        return False

    def command_arguments(self, node):
        d = node.definition
        reg = node.registration
        args = node.args
        resolved = []
        for arg in args:
            if arg.kind != S.TAG:
                resolved.append(None)
                continue
            tag, data = self.find_tag(node, arg.value)
            if tag is None:
                self.error(arg.line, "unknown tagged argument ':%s' for the %s %s "
                           "(reported only once at first occurrence)"
                           % (arg.value, node.name, node.kind_name()))
                reg.tags.append((arg.value.lower(), _UNKNOWN_TAG))
                return False
            if tag is _UNKNOWN_TAG:
                return False
            arg.data = data
            resolved.append(tag)
        # Validate leading tagged arguments.
        i = 0
        seen = []   # (TagDef, id_code) of tags validated so far
        while i < len(args) and args[i].kind == S.TAG:
            tag = resolved[i]
            arg = args[i]
            if not tag.multiple:
                for prev_tag in seen:
                    if prev_tag is tag or (tag.id_code > 0 and
                                           prev_tag.id_code == tag.id_code):
                        if tag.identifier.lower() != arg.value.lower():
                            desc = "%s argument (:%s)" % (tag.identifier, arg.value)
                        else:
                            desc = ":%s argument" % tag.identifier
                        self.error(arg.line, "encountered duplicate %s for the %s %s"
                                   % (desc, node.name, node.kind_name()))
                        return False
            seen.append(tag)
            nxt = tag.validate(self, node, args, i)
            if nxt is None:
                return False
            i = nxt
        positional = args[i:]
        for arg in positional:
            if arg.kind == S.TAG:
                self.error(arg.line, "encountered an unexpected tagged argument ':%s' "
                           "while validating positional arguments for the %s %s"
                           % (arg.value, node.name, node.kind_name()))
                return False
        node.positional = positional
        if d.positional >= 0 and len(positional) != d.positional:
            self.error(node.line, "the %s %s requires %d positional argument(s), "
                       "but %d is/are specified"
                       % (node.name, node.kind_name(), d.positional, len(positional)))
            return False
        for tag in reg.persistent:
            if not tag.validate_persistent(self, node):
                return False
        return True

    def command_subtests(self, node):
        count = node.definition.subtests
        ntests = len(node.tests)
        kind = node.kind_name()
        if count == 0:
            if ntests > 0:
                test = node.tests[0]
                reg = self.commands.get(test.name.lower())
                d = reg.definition if reg is not None else None
                if d is not None and d is not _UNKNOWN and d.is_test:
                    self.error(node.line, "the %s %s accepts no sub-tests, but tests "
                               "are specified" % (node.name, kind))
                elif (d is None or d is _UNKNOWN) and \
                        self.find_tag(node, test.name)[0] is not None:
                    self.error(node.line, "missing colon ':' before ':%s' tag in %s %s"
                               % (test.name, node.name, kind))
                else:
                    self.error(node.line, "missing semicolon ';' after %s %s"
                               % (node.name, kind))
                return False
        elif count == 1:
            if ntests == 0:
                self.error(node.line, "the %s %s requires one sub-test, but none is "
                           "specified" % (node.name, kind))
                return False
            if ntests > 1 or node.test_list:
                self.error(node.line, "the %s %s requires one sub-test, but a list of "
                           "tests is specified" % (node.name, kind))
                return False
        else:
            if ntests == 0:
                self.error(node.line, "the %s %s requires a list of sub-tests, but none "
                           "is specified" % (node.name, kind))
                return False
            if ntests == 1 and not node.test_list:
                self.error(node.line, "the %s %s requires a list of sub-tests, but a "
                           "single test is specified" % (node.name, kind))
                return False
        return True

    def command_block(self, node):
        d = node.definition
        if d.block_required:
            if node.block is None:
                self.error(node.line, "the %s command requires a command block, but it "
                           "is missing" % node.name)
                return False
        elif not d.block_allowed and node.block is not None:
            self.error(node.line, "the %s command does not accept a command block, but "
                       "one is specified anyway" % node.name)
            return False
        return True

    def validate_command(self, node, const):
        """Validate node; const is a one-item list holding the constant value."""
        d = node.definition
        result = True
        if d is not None:
            if not d.pre_validate(self, node):
                return False
            if not self.command_arguments(node):
                result = False
                self.command_subtests(node)
            elif not self.command_subtests(node) or (
                    not node.is_test and not self.command_block(node)):
                result = False
            else:
                result = d.validate(self, node) and result
            if d.subtests > 0:
                if result or self.more_allowed():
                    result = self.validate_test_list(node, const) and result
            elif result:
                if d.has_validate_const:
                    _, const[0] = d.validate_const(self, node, const[0], -1)
                else:
                    const[0] = -1
            if result and const[0] == 0:
                return True
            if d.block_allowed and not node.is_test and (result or self.more_allowed()):
                result = self.validate_block(node.block or [], False) and result
        return result

    def validate_test_list(self, node, const):
        d = node.definition
        result = True
        if d is not None and d.has_validate_const:
            cont, const[0] = d.validate_const(self, node, const[0], -2)
            if not cont:
                return True
        kept = []
        tests = list(node.tests)
        i = 0
        while i < len(tests) and (result or self.more_allowed()):
            test = tests[i]
            i += 1
            sub = [-2]
            result = (self.command_context(test) and self.validate_command(test, sub)
                      and result)
            if result:
                if d is not None and d.has_validate_const:
                    cont, const[0] = d.validate_const(self, node, const[0], sub[0])
                    if not cont:
                        node.tests = kept + ([] if sub[0] >= 0 else [test]) + tests[i:]
                        return True
                else:
                    const[0] = -1
            if result and sub[0] >= 0:
                continue   # constant test: detached
            kept.append(test)
        node.tests = kept + tests[i:]
        return result

    def current_block_prev(self, node):
        """The command before node in the block being validated (or None)."""
        block, index = self._block_stack[-1]
        return block[index - 1] if index > 0 else None

    def validate_block(self, block, root):
        entry = [block, 0]
        self._block_stack.append(entry)
        try:
            return self._validate_block(block, root, entry)
        finally:
            self._block_stack.pop()

    def _validate_block(self, block, root, entry):
        result = True
        fatal = False
        for index, node in enumerate(block):
            entry[1] = index
            if fatal or not (result or self.more_allowed()):
                break
            if root and not self.finished_require and node.name.lower() != "require":
                self.finished_require = True
                for name, fn in list(self.post_validators):
                    ext_entry = self.loaded.get(name)
                    if ext_entry is not None and \
                            not fn(self, ext_entry[1], ext_entry[0]):
                        fatal = True
                        break
            ok = self.command_context(node)
            result = ok and result
            const = [-2]
            result = (not fatal) and self.validate_command(node, const) and result
        return result and not fatal

    def run(self, tree, validate_only_errors=False):
        """Validate and compile tree; None on errors (generation_failed tells which)."""
        self.generation_failed = False
        # Like Pigeonhole, success is the validation's verdict: a few errors
        # (an unknown variable namespace) are reported without failing it.
        ok = self.validate_block(tree, True)
        if not ok:
            return None
        from .compiler import Compiler
        compiler = Compiler(self)
        ops = compiler.block(tree)
        if compiler.failed:
            self.generation_failed = True
            return None
        exts = sorted(self.loaded)
        includes, deps = {}, []
        ictx = getattr(self, "include_ctx", None)
        if ictx is not None and not getattr(self, "shared_globals", False):
            includes = {k: p for k, p in ictx.programs.items() if p is not False}
            deps = list(ictx.deps)
            for program in includes.values():
                if isinstance(program, Program):
                    exts = sorted(set(exts) | set(program.extensions))
        return Program(self.name, ops, exts, includes, deps)


class _LineArg:
    __slots__ = ("line",)

    def __init__(self, line):
        self.line = line

"""include (RFC 6609): include, return, global, and the "global" namespace.

include [:personal / :global] [:once] [:optional] <name: string> names a script
in the user's script directory (sieve_dir, default ~/sieve) or the
administrator's (sieve_global_dir). As in Pigeonhole, included scripts are
compiled into the including program when it is compiled: a missing script (not
:optional), an error in it, a circular include, more than
sieve_include_max_includes scripts or nesting deeper than
sieve_include_max_nesting_depth are compile errors of the includer
("failed to validate included script 'x'", "circular include", ...).

At run time an included script has its own variables, except those declared
with `global` (or named "global.<name>"), which all scripts of the run share;
`return` ends the included script, `stop` ends the whole run; an include marked
:once runs at most once per run.
"""

import os

from .. import syntax as S
from ..interpreter import HANDLERS, Interpreter, ReturnScript, SieveRunError
from ..diagnostics import sanitize
from ..limits import MAX_SCRIPT_NAME_LEN
from ..defs import CommandDef, TagDef
from ..program import Resolver, missing_source_key, source_key  # noqa: F401 (Resolver re-exported)
from ..defs import valid_variable_identifier

MISSING = (-1, -1)


def valid_script_name(name):
    if not name or len(name) > MAX_SCRIPT_NAME_LEN or "/" in name or "\0" in name:
        return False
    if name in (".", ".."):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return all(ord(c) >= 0x20 and ord(c) != 0x7F for c in name)


class LocationTag(TagDef):
    def __init__(self, ident):
        self.identifier = ident

    def validate(self, v, node, args, i):
        if "location" in node.tags:
            v.error(args[i].line, "include: cannot use location tags ':personal' and "
                    "':global' multiple times")
            return None
        node.tags["location"] = self.identifier
        return i + 1


class FlagTag(TagDef):
    def __init__(self, ident):
        self.identifier = ident

    def validate(self, v, node, args, i):
        node.tags[self.identifier] = True
        return i + 1


class Include(CommandDef):
    name = "include"
    positional = 1

    def registered(self, v, reg):
        for ident in ("personal", "global"):
            v.register_tag(reg, LocationTag(ident))
        for ident in ("once", "optional"):
            v.register_tag(reg, FlagTag(ident))

    def validate(self, v, node):
        arg = node.positional[0]
        value = v.positional_value(node, arg, "value", 1, S.STRING)
        if value is None:
            return False
        if not isinstance(value, str):
            v.error(arg.line, "the include command requires a constant string for "
                    "its value argument")
            return False
        if not valid_script_name(value):
            v.error(arg.line, "include: invalid script name '%s'" % sanitize(value, 80))
            return False
        location = node.tags.get("location", "personal")
        resolver = v.env.include
        path = resolver.locate(location, value) if resolver is not None else None
        if path is None or not os.path.isdir(os.path.dirname(path)):
            v.error(arg.line, "include: %s location for included script `%s' is "
                    "unavailable (contact system administrator for more information)"
                    % (location, sanitize(value, 80)))
            return False
        exists = os.path.exists(path)
        if not exists:
            if os.path.lexists(path) or (os.path.exists(os.path.dirname(path)) and
                                         not os.access(os.path.dirname(path), os.X_OK)):
                v.error(arg.line, "failed to access included %s script '%s': %s"
                        % (location, sanitize(value, 80), "permission denied"))
                return False
            if not node.tags.get("optional"):
                v.error(arg.line, "included %s script '%s' does not exist"
                        % (location, sanitize(value, 80)))
                return False
        node.data = {"location": location, "name": value, "path": path,
                     "exists": exists, "once": bool(node.tags.get("once")),
                     "optional": bool(node.tags.get("optional"))}
        return True

    def compile(self, c, node):
        return compile_include(c, node)


class Return(CommandDef):
    name = "return"

    def compile(self, c, node):
        return ("return", node.line)


class Global(CommandDef):
    name = "global"
    positional = 1

    def validate(self, v, node):
        arg = node.positional[0]
        if v.variables is None:
            v.error(node.line, "%s command requires that variables extension is active"
                    % node.name)
            return False
        if arg.kind not in (S.STRING, S.STRING_LIST):
            v.error(arg.line, "the %s command accepts a single string or string list "
                    "argument, but %s was found" % (node.name, arg.type_name()))
            return False
        for name in arg.strings():
            if not valid_variable_identifier(name):
                v.error(node.line, "invalid variable identifier '%s'"
                        % sanitize(name, 80))
                return False
            low = name.lower()
            if low in v.variables and low not in v.globals:
                v.error(node.line, "declaration of new global variable '%s' conflicts "
                        "with earlier local use" % name)
                return False
            v.globals.add(low)
        return True

    def compile(self, c, node):
        return None


class Import(Global):
    """import / export: the include draft's DEPRECATED forms of global, still
    accepted by Pigeonhole, only at the top of a script (after require and
    other import/export commands)."""

    name = "import"

    def validate(self, v, node):
        prev = v.current_block_prev(node)
        top = len(v._block_stack) == 1
        if not top or (prev is not None and prev.name.lower() not in
                       ("require", "import", "export")):
            v.error(node.line, "the DEPRECATED %s command can only be placed at top "
                    "level at the beginning of the file after any require or "
                    "import/export commands" % node.name)
            return False
        return super().validate(v, node)


class Export(Import):
    name = "export"


def _global_namespace(v, elements, line, assignment):
    if len(elements) != 2:
        v.error(line, "invalid variable name within global namespace: encountered "
                "sub-namespace")
        return None
    if isinstance(elements[1], int):
        v.error(line, "invalid variable name within global namespace: encountered "
                "numeric variable name")
        return None
    return ("n", "global", elements[1].lower())


def load(v, name):
    if not hasattr(v, "globals"):
        v.globals = set()
    v.register_command(Include(), name)
    v.register_command(Return(), name)
    v.register_command(Global(), name)
    v.register_command(Import(), name)
    v.register_command(Export(), name)
    v.namespaces["global"] = _global_namespace
    return True


# -- compile-time inclusion (Pigeonhole does it at code generation) ----------------

class IncludeContext:
    """Shared by a program and everything it includes."""

    def __init__(self, root_path, settings):
        self.programs = {}              # key -> Program or None (missing)
        self.chain = [root_path]        # scripts being compiled, outermost first
        self.max_depth = settings.get("max_include_depth", 10)
        self.max_includes = settings.get("max_includes", 255)
        self.deps = []


def compile_include(c, node):
    from ..script import decode_script, read_script, script_name
    from ..validator import Validator
    v = c.v
    data = node.data
    ictx = getattr(v, "include_ctx", None)
    if ictx is None:
        ictx = v.include_ctx = IncludeContext(getattr(v, "script_path", None),
                                              v.env.settings)
    key = "%s:%s" % (data["location"], data["name"])
    op = ("include", node.line, key, data["once"], data["optional"])
    if v.diag.errors:
        c.failed = True
        return op
    depth = len(ictx.chain)
    if depth > ictx.max_depth:
        v.error(node.line, "cannot nest includes deeper than %d levels" % ictx.max_depth)
        c.failed = True
        return op
    real = os.path.realpath(data["path"])
    if not data["once"] and real in ictx.chain:
        v.error(node.line, "circular include")
        c.failed = True
        return op
    if key in ictx.programs:
        return op
    if real == ictx.chain[0]:
        ictx.programs[key] = "main"
        return op
    if len(ictx.programs) >= ictx.max_includes:
        v.error(node.line, "failed to include script '%s': no more than %d includes "
                "allowed" % (sanitize(data["name"], 80), ictx.max_includes))
        c.failed = True
        return op
    if not data["exists"]:
        ictx.programs[key] = None
        ictx.deps.append(missing_source_key(real))
        return op
    try:
        raw, st = read_script(data["path"], 0)
    except OSError as exc:
        v.error(node.line, "failed to access included %s script '%s': %s"
                % (data["location"], sanitize(data["name"], 80),
                   getattr(exc, "strerror", "error")))
        c.failed = True
        return op
    ictx.deps.append(source_key(real, st))
    ictx.programs[key] = False   # being compiled
    from ..parser import parse
    name = script_name(data["path"])
    tree = parse(decode_script(raw), v.diag, name)
    if tree is None:
        v.error(node.line, "failed to parse included script '%s'"
                % sanitize(data["name"], 80))
        c.failed = True
        return op
    from ..program import ValidationEnv
    env = v.env
    sub_env = ValidationEnv(env.enabled, env.settings, env.include,
                            data["location"] == "global", env.no_envelope)
    sub = Validator(name, v.diag, sub_env)
    sub.include_ctx = ictx
    sub.shared_globals = True
    ictx.chain.append(real)
    try:
        program = sub.run(tree, validate_only_errors=True)
    finally:
        ictx.chain.pop()
    if program is None:
        if getattr(sub, "generation_failed", False):
            v.error(node.line, "failed to generate code for included script '%s'"
                    % sanitize(data["name"], 80))
        else:
            v.error(node.line, "failed to validate included script '%s'"
                    % sanitize(data["name"], 80))
        c.failed = True
        return op
    ictx.programs[key] = program
    return op


# -- run time ---------------------------------------------------------------------

def run_include(it, op):
    key, once = op[2], op[3]
    ctx = it.ctx
    root = ctx.root_program
    program = root.includes.get(key)
    if program == "main":
        program = root
    if program is None:
        return  # missing :optional script
    if once:
        if key in ctx.included:
            return
    ctx.included.add(key)
    stack = ctx.include_stack
    if not once and key in stack:
        raise SieveRunError("", "include: circular include of script '%s'"
                            % key.split(":", 1)[1])
    stack.append(key)
    try:
        child = Interpreter(ctx, program)
        # An included script runs inside the includer's foreverypart loops: its
        # own loops walk the current part's children and count toward the
        # nesting limit (Pigeonhole's parent_loop_level).
        child.loop_parts = list(it.loop_parts)
        child.run()
    finally:
        stack.pop()


def run_return(it, op):
    raise ReturnScript()


HANDLERS["include"] = run_include
HANDLERS["return"] = run_return

"""The Sieve interpreter: runs a compiled Program against one message.

Interpreter(ctx, program, result).run() executes the program's op tuples in order.
Each op is (name, line, params...); HANDLERS maps a command name to a function
handler(interp, op) and TESTS a test name to test(interp, op) -> bool. Extension
modules add to both when imported; Interpreter imports the modules a program
needs before it starts and dispatches only to the handlers those modules (and
the core) define, whatever else the process has loaded.

State kept here: the script's variables (RFC 5229, names case-insensitive), the
match values ${0}..${31} (set by :matches/:regex when variables is in use), the
current loop depth (foreverypart) and the CPU time budget.

Errors: a run-time error (an invalid redirect address made from a variable, too
many actions, a CPU time overrun, ...) raises SieveRunError(location, message);
runner.run_program() reports it and the delivery falls back to implicit keep, as
Pigeonhole does. StopScript ends the whole run (stop); ReturnScript ends the
current script (include's return).

Security: scripts are untrusted. Loops are bounded by the program's size (Sieve
has no backward jumps; foreverypart iterates a bounded part list), variables are
truncated to max_variable_size, and every MAX_OPS_BETWEEN_CHECKS ops the CPU time
used is compared with sieve_max_cpu_time; a long C-level operation (a regex) is
interrupted by the SIGPROF timer the runner arms (cpu.py).
"""

from ..errors import SieveError
from .cpu import over as cpu_over
from .limits import MAX_MATCH_VALUES

HANDLERS = {}
TESTS = {}
# name -> the extension a program must declare to run that command or test, for
# handlers that share a module with others (fileinto and envelope live in
# core_runtime): the module being loaded is not enough for them.
REQUIRES = {}

# How often the op loop looks at the clock (thread_time() costs ~0.1 us).
MAX_OPS_BETWEEN_CHECKS = 64


class SieveRunError(SieveError):
    """A run-time error at a script location; the run fails (implicit keep)."""

    def __init__(self, location, message, temporary=False):
        super().__init__(message)
        self.location = location
        self.message = message
        self.temporary = temporary


class CpuLimitError(SieveRunError):
    """The script used more CPU time than sieve_max_cpu_time."""


class StopScript(Exception):
    """stop: end all script execution."""


class ReturnScript(Exception):
    """return: end the current (included) script."""


class BreakLoop(Exception):
    """break: leave a foreverypart loop (name None: the innermost)."""

    def __init__(self, name):
        super().__init__(name)
        self.name = name


class Interpreter:
    """One script's run. ctx is the shared run context (message, result, settings)."""

    def __init__(self, ctx, program, variables=None, parent=None):
        self.ctx = ctx
        self.program = program
        self.name = program.name
        self.result = ctx.result
        self.variables = {} if variables is None else variables
        self.match_values = []
        self.match_values_enabled = "variables" in program.extensions
        self.glob_cache = ctx.glob_cache
        self.line = 0
        self.parent = parent
        self.loop_parts = []          # foreverypart stack: (name, part)
        self.max_variable_size = ctx.settings.max_variable_size
        self._ops = 0
        self.handlers, self.tests = _dispatch_tables(program.extensions)

    # -- locations and errors --------------------------------------------------------

    def location(self, line=None):
        line = self.line if line is None else line
        return f"{self.name}: line {line}" if line else self.name

    def error(self, message, line=None):
        """A run-time error; like Pigeonhole's, it names no location."""
        raise SieveRunError(self.location(line) if line else "", message)

    def warning(self, message, line=None):
        self.ctx.diag.warning(self.location(line) if line else "", message)

    # -- strings ----------------------------------------------------------------------

    def expand(self, value):
        """A compiled string as a str (templates substituted)."""
        if value.__class__ is str:
            return value
        parts = []
        for part in value["$"]:
            if part.__class__ is str:
                parts.append(part)
                continue
            kind = part[0]
            if kind == "v":
                parts.append(self.variables.get(part[1], ""))
            elif kind == "m":
                idx = part[1]
                mv = self.match_values
                parts.append(mv[idx] if idx < len(mv) else "")
            else:
                parts.append(self.ctx.namespace_get(self, part[1], part[2]))
        return "".join(parts)

    def expand_list(self, values):
        """A compiled string list as strs: the program's own list when it holds
        no template (most do; a copy per test was 4% of a 200-rule run), so
        callers read the list and never change it."""
        for v in values:
            if v.__class__ is not str:
                expand = self.expand
                return [v if v.__class__ is str else expand(v) for v in values]
        return values

    def set_variable(self, name, value):
        # The limit is in bytes (UTF-8), as Pigeonhole's; len() counts characters.
        if len(value) > self.max_variable_size or not value.isascii():
            value = _truncate_utf8(value, self.max_variable_size)
        self.variables[name] = value

    def set_match_values(self, values):
        if self.match_values_enabled:
            self.match_values = values[:MAX_MATCH_VALUES]

    # -- execution --------------------------------------------------------------------

    def check_cpu(self):
        ctx = self.ctx
        if ctx.cpu_deadline is not None and cpu_over(ctx.cpu_deadline):
            raise CpuLimitError("", "execution exceeded CPU time limit")

    def run_block(self, ops):
        handlers = self.handlers
        trace = self.ctx.trace
        for op in ops:
            self.line = op[1]
            if trace is not None:
                trace.write("%s: line %d: %s" % (self.name, op[1], op[0]))
            self._ops += 1
            if self._ops >= MAX_OPS_BETWEEN_CHECKS:
                self._ops = 0
                self.check_cpu()
            handlers[op[0]](self, op)

    def test(self, op):
        self.line = op[1]
        result = self.tests[op[0]](self, op)
        if self.ctx.trace is not None:
            self.ctx.trace.write("%s: line %d: %s test: %s" % (
                self.name, op[1], op[0], "true" if result else "false"))
        return result

    def run(self):
        """Run the whole program; ReturnScript just ends it."""
        try:
            self.run_block(self.program.ops)
        except ReturnScript:
            pass


_TABLES = {}   # frozenset of extension names -> (handlers, tests)


def _dispatch_tables(extensions):
    """The commands and tests a program may run: the core's and those of the
    extensions it declares, nothing else -- even when another script of the same
    delivery loaded more (a cached program naming an op of an extension it does
    not declare fails instead of running it; see cache.py)."""
    key = frozenset(extensions)
    tables = _TABLES.get(key)
    if tables is None:
        # Only the run-time halves: running never needs the compiler's modules.
        from .extensions import EXTENSIONS, load_extension_module
        modules = {load_extension_module("core_runtime").__name__}
        for ext in key:
            info = EXTENSIONS.get(ext)
            if info is not None:
                modules.add(load_extension_module(info[-1]).__name__)

        def allowed(name, func):
            need = REQUIRES.get(name)
            return func.__module__ in modules and (need is None or need in key)

        tables = ({k: f for k, f in HANDLERS.items() if allowed(k, f)},
                  {k: f for k, f in TESTS.items() if allowed(k, f)})
        _TABLES[key] = tables
    return tables


def _truncate_utf8(text, limit):
    """Cut text to at most limit UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")

"""The Sieve extensions: which exist, which are on by default, where they live.

EXTENSIONS maps a capability name (what `require` names) to the module in this
package that implements it. A module has load(validator, name) -> bool, which
registers its commands, tests and tags in the validator, and registers its run
time handlers in interpreter.HANDLERS / TESTS when it is imported. Modules are
imported only when a script needs them. An entry may name a second module, the
extension's run-time half (`<name>_runtime`, which registers the handlers and
does not import the compiler): the interpreter imports only that one (runtime_module()),
so a delivery from the compile cache loads no compiler code; the defining
module imports its run-time half too. fileinto's and envelope's run-time halves
are in core_runtime (RFC 5228 defines them beside the core; one import fewer
for nearly every script), registered in interpreter.REQUIRES so that only a
program declaring them dispatches them.

DEFAULT_ENABLED is Pigeonhole's default set (sieve_extensions unset) plus ereject
and comparator-i;unicode-casemap, which mailslot adds (Debian's Pigeonhole 0.5.19
has neither; see docs/sieve.md). enabled_extensions() applies a sieve_extensions
style setting ("+ext -ext", or a plain list that replaces the set).
"""

EXTENSIONS = {
    "fileinto": ("fileinto", "core_runtime"),
    "reject": ("reject",),
    "ereject": ("reject",),
    "envelope": ("envelope", "core_runtime"),
    "encoded-character": ("encoded",),
    "comparator-i;octet": ("comparators",),
    "comparator-i;ascii-casemap": ("comparators",),
    "comparator-i;ascii-numeric": ("comparators",),
    "comparator-i;unicode-casemap": ("comparators",),
    "vacation": ("vacation",),
    "vacation-seconds": ("vacation",),
    "subaddress": ("subaddress",),
    "relational": ("relational",),
    "regex": ("regex",),
    "imap4flags": ("imap4flags", "imap4flags_runtime"),
    "copy": ("copy",),
    "include": ("include",),
    "body": ("body",),
    "variables": ("variables", "variables_runtime"),
    "enotify": ("enotify",),
    "environment": ("environment",),
    "mailbox": ("mailbox",),
    "date": ("date",),
    "index": ("index",),
    "ihave": ("ihave",),
    "duplicate": ("duplicate",),
    "mime": ("mime",),
    "foreverypart": ("mime",),
    "extracttext": ("mime",),
    "editheader": ("editheader",),
    "spamtest": ("spamvirus",),
    "spamtestplus": ("spamvirus",),
    "virustest": ("spamvirus",),
    "vnd.dovecot.debug": ("debug",),
    "vnd.dovecot.environment": ("vnd_environment", "environment"),
    "vnd.dovecot.duplicate": ("duplicate",),
}

# Pigeonhole 0.5's sieve_core_extensions (enabled unless configured otherwise).
PIGEONHOLE_DEFAULT = (
    "fileinto", "reject", "envelope", "encoded-character", "vacation",
    "subaddress", "comparator-i;ascii-numeric", "relational", "regex",
    "imap4flags", "copy", "include", "body", "variables", "enotify",
    "environment", "mailbox", "date", "index", "ihave", "duplicate", "mime",
    "foreverypart", "extracttext",
)
# Always there (Pigeonhole's "dummy" extensions).
ALWAYS = ("comparator-i;octet", "comparator-i;ascii-casemap")
# mailslot's additions to the default set.
MAILSLOT_EXTRA = ("ereject", "comparator-i;unicode-casemap")

DEFAULT_ENABLED = frozenset(PIGEONHOLE_DEFAULT + ALWAYS + MAILSLOT_EXTRA)


def enabled_extensions(setting=None, base=DEFAULT_ENABLED):
    """Apply a sieve_extensions value to base; return (enabled set, unknown names).

    "+name" adds, "-name" removes; if any item has no sign the set starts empty
    (Pigeonhole: a plain list replaces the defaults).
    """
    if setting is None:
        return set(base), []
    items = setting.split() if isinstance(setting, str) else list(setting)
    unknown = []
    if any(item[:1] not in ("+", "-") for item in items):
        enabled = set(ALWAYS)
    else:
        enabled = set(base)
    for item in items:
        sign = item[:1]
        name = item[1:] if sign in ("+", "-") else item
        if name not in EXTENSIONS:
            unknown.append(name)
            continue
        if sign == "-":
            if name not in ALWAYS:
                enabled.discard(name)
        else:
            enabled.add(name)
    return enabled, unknown


_MODULES = {}


def load_extension_module(module_name):
    """Import extensions/<module_name>.py once and return it."""
    module = _MODULES.get(module_name)
    if module is None:
        module = __import__(f"{__name__}.{module_name}", fromlist=[module_name])
        _MODULES[module_name] = module
    return module


def module_for(ext_name):
    return EXTENSIONS[ext_name][0]


def runtime_module(ext_name):
    """The module whose import registers ext_name's run-time handlers."""
    return EXTENSIONS[ext_name][-1]

"""include (RFC 6609): include, return, global, and the "global" namespace.

include [:personal / :global] [:once] [:optional] <name: string> compiles the
named script into the including one at compile time (Pigeonhole does the same),
so a missing script or an error in it is a compile error of the includer.
:personal scripts come from sieve_dir (default ~/sieve), :global ones from
sieve_global_dir. Loops ("included script 'x' ... is already included") and
depth (sieve_include_max_nesting_depth, 10) are checked.

At run time an included script shares the variables named by `global` (and the
"global." namespace) with its includer; `return` ends the included script; stop
ends everything.
"""

import os

from .. import syntax as S
from ..interpreter import HANDLERS, Interpreter, ReturnScript
from ..lexer import sanitize
from ..validator import CommandDef, TagDef


class Resolver:
    """Where :personal and :global scripts live."""

    def __init__(self, personal_dir=None, global_dir=None):
        if personal_dir is None:
            home = os.environ.get("HOME")
            personal_dir = os.path.join(home, "sieve") if home else None
        self.personal_dir = personal_dir
        self.global_dir = global_dir

    def locate(self, location, name):
        base = self.personal_dir if location == "personal" else self.global_dir
        if base is None:
            return None
        return os.path.join(base, name + ".sieve")

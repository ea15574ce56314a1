"""Where Sieve scripts are: Pigeonhole's script location syntax (parse_location,
expand_home), for the interpreter's modules.

The functions live in mailslot/script_location.py, outside this package, so that
the delivery's "is there any script?" check (script_location.has_scripts) can run
without importing the sieve package at all; this module names them for the
modules inside it.
"""

from ..script_location import expand_home, parse_location  # noqa: F401

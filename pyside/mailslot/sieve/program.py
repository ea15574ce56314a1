"""A compiled Sieve program, and what a compile may use.

Resolver says where :personal and :global scripts live (include).

Program is what the validator produces, the interpreter runs and the cache
stores: the script's name, its ops (lists/tuples of JSON data, see
validator.py), the extensions it uses, the programs it includes and the files
it depends on. ValidationEnv carries the enabled extensions and settings into a
compile. Kept apart from validator.py so that running a cached program does
not import the compiler.
"""

import os


class Program:
    """A compiled script: what the interpreter runs and the cache stores."""

    __slots__ = ("name", "ops", "extensions", "includes", "deps")

    def __init__(self, name, ops, extensions, includes=None, deps=None):
        self.name = name
        self.ops = ops                  # list of op tuples
        self.extensions = extensions    # sorted list of extension names used
        self.includes = includes or {}  # include key -> Program
        self.deps = deps or []          # [source_key(...)] of the script and its includes


def source_key(real_path, st):
    """What identifies one version of a script file for the compile cache: its real
    path, and from its stat, mtime, size, inode and ctime. ctime because an edit in
    place that keeps the size can put the mtime back (touch -r, utime), but only the
    kernel sets ctime."""
    return (real_path, st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


# The key of an :optional include that was missing when the program was compiled.
def missing_source_key(real_path):
    return (real_path, 0, -1, 0, 0)


class ValidationEnv:
    """What a compile may use: enabled extensions, settings, include resolution."""

    def __init__(self, enabled, settings=None, include=None, global_script=False,
                 no_envelope=False):
        self.enabled = enabled              # set of enabled extension names
        self.settings = settings or {}
        self.include = include              # include.Resolver or None
        self.global_script = global_script
        self.no_envelope = no_envelope


class Resolver:
    """Where :personal and :global scripts live."""

    def __init__(self, personal_dir=None, global_dir=None, home=None):
        # home: the delivery user's home (from the userdb), never $HOME.
        if personal_dir is None:
            personal_dir = os.path.join(home, "sieve") if home else None
        self.home = home
        self.personal_dir = personal_dir
        self.global_dir = global_dir
        # Which directories a compile resolved names in: a compiled program depends
        # on them (cache.py keys a cache by a directory only when it was used, so
        # an administrator's script compiled once fits every user's delivery).
        self.used = {}

    def base(self, location):
        """The directory :personal or :global names resolve in (None: none)."""
        return self.personal_dir if location == "personal" else self.global_dir

    def locate(self, location, name):
        base = self.base(location)
        self.used[location] = base
        if not base:
            return None
        if base.startswith("file:"):
            base = base[5:].split(";", 1)[0]
        if base.startswith("~"):
            from .location import expand_home
            base = expand_home(base, self.home)
        return os.path.join(base, name + ".sieve")

"""Compiling Sieve scripts: source text or file to a validated Program.

compile_text(text, name, env, diag) parses and validates; compile_file(path, ...)
reads the file first (enforcing sieve_max_script_size) and names the script after
the file, without ".sieve", as Pigeonhole does ("vacation.sieve" is "vacation"
in messages). load_program() is compile_file() behind the compile cache
(cache.py looks up and saves; it does not compile, so it imports nothing here).

Errors: problems in the script go to diag and the result is None; a script that
cannot be read raises ScriptNotFoundError / ScriptReadError (the caller decides:
a missing personal script is no error, a missing include is).

Security: scripts are read with O_NOFOLLOW off (an active script is commonly a
symlink, see ~/.dovecot.sieve) but only regular files are accepted, and no more
than max_script_size + 1 bytes are read.
"""

import os

from ..errors import SieveError
from .diagnostics import Diagnostics  # noqa: F401 (re-exported for callers)


class ScriptNotFoundError(SieveError):
    """The script file does not exist."""

    def __init__(self, errno, strerror, path):
        super().__init__(f"{path}: {strerror}")
        self.errno, self.strerror, self.filename = errno, strerror, path


class ScriptReadError(ScriptNotFoundError.__base__):
    """The script file exists but cannot be read (permissions, not a file)."""

    def __init__(self, errno, strerror, path):
        super().__init__(f"{path}: {strerror}")
        self.errno, self.strerror, self.filename = errno, strerror, path


def script_name(path):
    base = os.path.basename(path)
    if base.endswith(".sieve"):
        base = base[:-len(".sieve")]
    return base


def decode_script(data):
    """Script bytes to text. Invalid UTF-8 is kept (surrogateescape) for messages."""
    return data.decode("utf-8", "surrogateescape")


def compile_text(text, name, env, diag, path=None):
    """Parse and validate text; return a Program or None (errors in diag)."""
    from .parser import parse
    from .validator import Validator
    tree = parse(text, diag, name)
    if tree is None:
        diag.error(name, "parse failed")
        return None
    validator = Validator(name, diag, env)
    validator.script_path = os.path.realpath(path) if path else None
    program = validator.run(tree)
    if program is None:
        diag.error(name, "code generation failed" if validator.generation_failed
                   else "validation failed")
        return None
    return program


def read_script(path, max_size):
    """Read a script file; return (bytes, stat). Raises ScriptNotFoundError etc."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise ScriptNotFoundError(exc.errno, exc.strerror, path) from None
    except OSError as exc:
        raise ScriptReadError(exc.errno, exc.strerror, path) from None
    try:
        st = os.fstat(fd)
        import stat as _stat
        if not _stat.S_ISREG(st.st_mode):
            raise ScriptReadError(21, "not a regular file", path)
        chunks = []
        total = 0
        limit = max_size + 1 if max_size else None
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if limit is not None and total >= limit:
                break
        return b"".join(chunks), st
    finally:
        os.close(fd)


def compile_file(path, env, diag, max_size=0, name=None):
    """Compile the script at path; return (Program or None, stat)."""
    name = name or script_name(path)
    data, st = read_script(path, max_size)
    if max_size and len(data) > max_size:
        diag.error(name, "sieve script is too large (max %d bytes)" % max_size)
        diag.error(name, "parse failed")
        return None, st
    program = compile_text(decode_script(data), name, env, diag, path)
    if program is not None:
        from .program import source_key
        program.deps = [source_key(os.path.realpath(path), st)] + list(program.deps)
    return program, st


def make_env(settings, enabled=None, global_script=False, include=None,
             no_envelope=False):
    """The ValidationEnv for settings (a SieveSettings)."""
    from .extensions import enabled_extensions
    from .program import ValidationEnv
    if enabled is None:
        enabled, _ = enabled_extensions(settings.extensions)
        if global_script and settings.global_extensions:
            extra, _ = enabled_extensions(settings.global_extensions, base=frozenset())
            enabled = enabled | extra
    if include is None:
        from .program import Resolver
        include = Resolver(settings.sieve_dir, settings.global_dir, settings.home)
    return ValidationEnv(enabled, settings.validation_settings(), include,
                         global_script, no_envelope)


def load_program(path, env, diag, settings, name=None, cache=True, unsaved=None):
    """compile_file() through the compile cache (cache.py): a trusted, fresh
    cached program, else a compile whose result is saved for the next run;
    unsaved(problem) is called when it could not be saved."""
    name = name or script_name(path)
    if cache:
        from .cache import lookup
        program = lookup(path, env, settings, name)
        if program is not None:
            return program
    program, _ = compile_file(path, env, diag, settings.max_script_size, name)
    if program is not None and cache:
        from .cache import save_program
        problem = save_program(path, program, settings, env)
        if problem and unsaved is not None:
            unsaved(problem)
    return program


__all__ = ["compile_text", "compile_file", "load_program", "script_name",
           "Diagnostics", "ScriptNotFoundError", "ScriptReadError", "make_env"]

"""The compile cache: compiled Sieve programs stored beside their scripts.

A script is compiled once; the Program is saved as "<script>.msbin" next to it,
or, for the reader's own scripts when that directory is not writable, under the
delivery user's cache directory <home>/.cache/mailslot/sieve (named by a hash
of the script's real path; home is the user's home from the userdb, handed in
by the caller -- never $HOME). lookup() returns the cached Program only when the
file is trusted and valid for the script as it is now: same format version,
same source (path, mtime, size, inode and ctime of the script and of every included
script), same compile settings (and the same :personal/:global include
directories, when the script includes anything), extensions that are all
enabled for this script, and an intact CRC-32. Anything else -- an old or foreign file, a
truncated write, a changed include -- is ignored and the script recompiled by
the caller (script.load_program), which then saves the new program here.

Trust (who may have written the file): the CRC only detects accidents; it is
not a signature, anyone who can write the file can recompute it. So a cache is
read only from a place the script's owner controls: the file must be a regular
file owned by the script's owner or root, not writable by group or others, in
a directory owned by one of them and not writable by group or others (a sticky
directory is accepted: others cannot replace a file they do not own there).
The user's cache directory is used only for scripts the reader owns. So an
administrator's sieve_before script in a root-owned directory is run from a
cache only if root compiled it there (`mailslot sievec`); otherwise it is
compiled for each delivery, and never saved where the user could rewrite it.
Even a trusted cache must not use an extension that is not enabled for its
script (editheader is often enabled for global scripts only), and the
interpreter dispatches only the commands and tests of the extensions a program
declares (interpreter.py).

The format is a magic line, a CRC-32 and the program as JSON. JSON is decoded
by CPython's C scanner (_json, without importing json or re on the delivery
path): it builds data only -- dicts, lists, strings, numbers -- and never
imports, calls or evaluates anything named in the file (no pickle, no marshal,
no eval). The decoded program is checked (known extensions, ops are lists
whose first item is a name) and run by the same interpreter; an unknown op is
a corrupt cache.

Errors: lookup never raises for a bad cache file (None: recompile); saving
problems are returned as a message (sievec prints it) and never fail a delivery.
Security: reads open the directory once and the file in it with O_NOFOLLOW and
decide from fstat of what was opened; writes go through cache_write.py (a temp
file made with O_EXCL|O_NOFOLLOW in the opened directory, renamed there; as
root only where no other user can change the path, else as that user).
"""

import os
import zlib

from ..errors import SieveError
from .program import source_key

SOURCE_KEY_LEN = 5      # program.source_key: path, mtime, size, inode, ctime

MAGIC = b"MSLOT-SIEVE-2\n"
SUFFIX = ".msbin"
MAX_CACHE_SIZE = 64 << 20      # far beyond any program of a 1 MiB script
USER_CACHE_DIR = (".cache", "mailslot", "sieve")   # below the user's home
_S_ISVTX = 0o1000              # sticky directory: entries only changed by owners


class CorruptCacheError(SieveError, ValueError):
    """The cache file is not a valid encoding."""


# -- the codec ----------------------------------------------------------------------

class _ScanContext:
    """What _json's C scanner needs to know; plain JSON, nothing callable but the
    int/float constructors."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None
    memo = {}


_scanner = []


def encode(value):
    """JSON text (ASCII; lone surrogates escaped) for a program's data."""
    import json
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"),
                      check_circular=False, allow_nan=False).encode("ascii")


def decode(data):
    """Decode JSON data with CPython's C scanner; the whole input must be used.

    Only JSON's own types come out (dict, list, str, int, float, bool, None).
    """
    if not _scanner:
        try:
            import _json
            _scanner.append(_json.make_scanner(_ScanContext()))
        except (ImportError, AttributeError):
            import json
            _scanner.append(lambda text, idx: json.JSONDecoder().raw_decode(text, idx))
    try:
        text = data.decode("ascii")
        value, end = _scanner[0](text, 0)
    except (UnicodeDecodeError, StopIteration, ValueError, TypeError, RecursionError,
            MemoryError) as exc:
        raise CorruptCacheError("not valid JSON: %s" % type(exc).__name__) from None
    if end != len(text):
        raise CorruptCacheError("trailing data")
    return value


# -- programs ----------------------------------------------------------------------

def program_to_data(program):
    return {"name": program.name, "ops": program.ops,
            "extensions": list(program.extensions),
            "includes": {k: (p if p is None or isinstance(p, str)
                             else program_to_data(p))
                         for k, p in program.includes.items()},
            "deps": [list(d) for d in program.deps]}


def program_from_data(data, enabled=None):
    """The Program in decoded cache data; enabled: the extensions this script may
    use (an included program is held to the same set)."""
    from .program import Program
    if not isinstance(data, dict):
        raise CorruptCacheError("not a program")
    name, ops, exts = data.get("name"), data.get("ops"), data.get("extensions")
    includes, deps = data.get("includes"), data.get("deps")
    if not isinstance(name, str) or not isinstance(ops, list) or \
            not isinstance(exts, list) or not isinstance(includes, dict) or \
            not isinstance(deps, list):
        raise CorruptCacheError("not a program")
    from .extensions import EXTENSIONS
    for ext in exts:
        if ext not in EXTENSIONS:
            raise CorruptCacheError("unknown extension")
        if enabled is not None and ext not in enabled:
            raise CorruptCacheError("extension %s not enabled for this script" % ext)
    for op in ops:
        if not isinstance(op, (list, tuple)) or not op or not isinstance(op[0], str):
            raise CorruptCacheError("bad op")
    inc = {}
    for k, v in includes.items():
        if v is None or v == "main":
            inc[k] = v
        else:
            inc[k] = program_from_data(v, enabled)
    return Program(name, ops, exts, inc, [tuple(d) for d in deps])



def settings_key(env, settings):
    """What else the compiled form depends on besides the sources. The include
    directories are not in it: they are recorded per program, only when a
    compile resolved a name in them (see _used_dirs)."""
    parts = [",".join(sorted(env.enabled)), "G" if env.global_script else "P",
             repr(sorted((k, str(v)) for k, v in env.settings.items())),
             str(settings.max_script_size)]
    return "|".join(parts)


def _used_dirs(env):
    """{location: directory} of the :personal/:global directories a compile with
    env looked names up in (a program that includes nothing depends on none: an
    administrator's script compiled by root then fits every user)."""
    resolver = env.include
    used = getattr(resolver, "used", None) or {}
    return {loc: (base if base is None else str(base)) for loc, base in used.items()}


def _dirs_match(recorded, env):
    if not isinstance(recorded, dict):
        return False
    resolver = env.include
    for loc, base in recorded.items():
        if loc not in ("personal", "global") or resolver is None:
            return False
        now = resolver.base(loc)
        if (None if now is None else str(now)) != base:
            return False
    return True


def _dep_key(path):
    return source_key(os.path.realpath(path), os.stat(path))


def cache_paths(script_path, home=None, own=True):
    """Candidate cache files for a script: beside it, then (own: the script is the
    reader's) the user's cache directory below home."""
    base = script_path[:-len(".sieve")] if script_path.endswith(".sieve") else script_path
    paths = [base + SUFFIX]
    if own and home:
        digest = "%08x" % zlib.crc32(os.path.realpath(script_path).encode(
            "utf-8", "surrogateescape"))
        name = os.path.basename(base) + "-" + digest + SUFFIX
        paths.append(os.path.join(home, *USER_CACHE_DIR, name))
    return paths


def _trusted_dir(st, owners):
    """A directory in which only owners (or nobody else) can replace an entry."""
    if st.st_uid not in owners:
        return False
    # A sticky directory (/tmp) lets others add names but not replace ours.
    return not st.st_mode & 0o022 or bool(st.st_mode & _S_ISVTX)


def _read_file(path, owners):
    """The bytes of a cache file that only owners can have written, else None."""
    import stat as _stat
    directory, name = os.path.split(path)
    try:
        # why: decide from the opened directory and file, not from a path that a
        # rename can change between a check and the open.
        dfd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        dst = os.fstat(dfd)
        if not _trusted_dir(dst, owners):
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                         os.O_NONBLOCK, dir_fd=dfd)
        except OSError:
            return None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode) or st.st_uid not in owners or \
                st.st_mode & 0o022 or st.st_size > MAX_CACHE_SIZE:
            return None
        chunks = []
        total = 0
        while total <= MAX_CACHE_SIZE:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks) if total <= MAX_CACHE_SIZE else None
    finally:
        os.close(fd)


def _parse_file(data, skey):
    if not data.startswith(MAGIC):
        raise CorruptCacheError("magic")
    body = data[len(MAGIC):]
    if len(body) < 9 or body[8:9] != b"\n":
        raise CorruptCacheError("header")
    try:
        crc = int(body[:8], 16)
    except ValueError:
        raise CorruptCacheError("header") from None
    payload = body[9:]
    if zlib.crc32(payload) != crc:
        raise CorruptCacheError("checksum")
    record = decode(payload)
    if not isinstance(record, dict) or record.get("settings") != skey:
        raise CorruptCacheError("settings")
    return record


def _owners(st):
    """Who may have written a trusted cache for a script with stat st."""
    return frozenset((st.st_uid, 0))


def _own(st):
    """Whether the user's cache directory may hold this script's cache: the
    script is the reader's own (root's scripts are the administrator's: their
    cache belongs beside them, where deliveries look)."""
    euid = os.geteuid()
    return st.st_uid == euid and euid != 0


def lookup(path, env, settings, name):
    """The cached Program for the script at path, or None (compile it)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    owners = _owners(st)
    real = os.path.realpath(path)
    skey = settings_key(env, settings)
    for cpath in cache_paths(path, settings.home, own=_own(st)):
        data = _read_file(cpath, owners)
        if data is None:
            continue
        try:
            record = _parse_file(data, skey)
            if not _dirs_match(record.get("dirs"), env):
                continue
            program = program_from_data(record.get("program"), env.enabled)
            if program.name != name or not program.deps or \
                    program.deps[0][0] != real:
                continue
            if _fresh(program.deps):
                return program
        except (CorruptCacheError, ValueError, TypeError, KeyError):
            continue
    return None


def _fresh(deps):
    """Whether every source a program was compiled from is unchanged."""
    for dep in deps:
        if not isinstance(dep, tuple) or len(dep) != SOURCE_KEY_LEN or not isinstance(dep[0], str):
            raise CorruptCacheError("deps")
        if dep[2] == -1:
            # A missing :optional include: fresh while it stays missing.
            if os.path.lexists(dep[0]):
                return False
            continue
        try:
            if _dep_key(dep[0]) != dep:
                return False
        except OSError:
            return False
    return True


def save_program(path, program, settings, env, out_path=None):
    """Write program's cache file; return None or a problem description.

    Without out_path it goes to the first place lookup() would trust: beside the
    script when this process runs as its owner (or as root), else the user's
    cache directory for the user's own scripts, else nowhere (an administrator's
    script that only root may cache: compiled per delivery).
    """
    from .cache_write import write_file
    record = {"settings": settings_key(env, settings), "dirs": _used_dirs(env),
              "program": program_to_data(program)}
    payload = encode(record)
    data = MAGIC + b"%08x\n" % zlib.crc32(payload) + payload
    try:
        st = os.stat(path)
    except OSError as exc:
        return "cannot write compiled script for %s: %s" % (path, exc.strerror)
    # The cache is as readable as the script (a root-compiled admin script must be
    # readable by the users whose deliveries run it), never writable by others.
    mode = (st.st_mode & 0o644) | 0o600
    if out_path:
        targets = [out_path]
    else:
        euid = os.geteuid()
        if euid not in _owners(st):
            return ("compiled script not saved: only its owner (uid %d) or root may "
                    "write a cache that deliveries trust" % st.st_uid)
        targets = cache_paths(path, settings.home, own=_own(st))
    problem = None
    for i, target in enumerate(targets):
        if not out_path:
            # A file lookup() would never trust is not worth writing.
            try:
                dst = os.stat(os.path.dirname(target) or ".")
            except OSError:
                dst = None          # the user's cache directory, made 0700 below
            if dst is not None and not _trusted_dir(dst, _owners(st)):
                problem = ("compiled script not saved in %s: others than the "
                           "script's owner and root can change that directory"
                           % (os.path.dirname(target) or "."))
                continue
        try:
            write_file(target, data, mode, create_dir=i > 0)
            return None
        except OSError as exc:
            problem = "cannot write compiled script %s: %s" % (
                target, exc.strerror or exc)
    return problem

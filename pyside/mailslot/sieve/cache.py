"""The compile cache: compiled Sieve programs stored beside their scripts.

A script is compiled once; the Program is saved as "<script>.msbin" next to it
(or, when that directory is not writable, under the cache directory
$XDG_CACHE_HOME/mailslot/sieve or ~/.cache/mailslot/sieve, named by a hash of
the script's real path). load_cached() uses the file only when it is valid for
the script as it is now: same format version, same source (path, mtime, size,
inode of the script and of every included script), same compile settings
(enabled extensions, limits), and an intact checksum. Anything else -- an old
or foreign file, a truncated write, a changed include -- is ignored and the
script recompiled (and the cache rewritten).

The format is a magic line, a CRC-32 and the program as JSON. JSON is decoded
by CPython's C scanner (_json, without importing json or re on the delivery
path): it builds data only -- dicts, lists, strings, numbers -- and never
imports, calls or evaluates anything named in the file (no pickle, no marshal,
no eval). The decoded program is checked (known extensions, ops are lists
whose first item is a name) and run by the same interpreter, whose dispatch
only knows the handlers of the extensions; an unknown op is a corrupt cache.

Errors: loading never raises for a bad cache file (it recompiles); saving
problems are returned as a message (sievec prints it) and never fail a delivery.
Security: the file is written to a temp name with O_EXCL|O_NOFOLLOW, mode 0600,
then renamed into place; it is read with O_NOFOLLOW and only if it is a regular
file owned by the reader.
"""

import os
import zlib

from ..errors import SieveError

MAGIC = b"MSLOT-SIEVE-2\n"
SUFFIX = ".msbin"
MAX_CACHE_SIZE = 64 << 20      # far beyond any program of a 1 MiB script


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


def program_from_data(data):
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
    for op in ops:
        if not isinstance(op, (list, tuple)) or not op or not isinstance(op[0], str):
            raise CorruptCacheError("bad op")
    inc = {}
    for k, v in includes.items():
        if v is None or v == "main":
            inc[k] = v
        else:
            inc[k] = program_from_data(v)
    return Program(name, ops, exts, inc, [tuple(d) for d in deps])


def settings_key(env, settings):
    """What else the compiled form depends on besides the sources."""
    parts = [",".join(sorted(env.enabled)), "G" if env.global_script else "P",
             repr(sorted((k, str(v)) for k, v in env.settings.items())),
             str(settings.max_script_size), str(settings.sieve_dir),
             str(settings.global_dir)]
    return "|".join(parts)


def _dep_key(path):
    st = os.stat(path)
    return (os.path.realpath(path), st.st_mtime_ns, st.st_size, st.st_ino)


def cache_paths(script_path):
    """Candidate cache files for a script: beside it, then the cache directory."""
    base = script_path[:-len(".sieve")] if script_path.endswith(".sieve") else script_path
    paths = [base + SUFFIX]
    home = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(os.environ["HOME"], ".cache") if os.environ.get("HOME") else None)
    if home:
        digest = "%08x" % zlib.crc32(os.path.realpath(script_path).encode(
            "utf-8", "surrogateescape"))
        name = os.path.basename(base) + "-" + digest + SUFFIX
        paths.append(os.path.join(home, "mailslot", "sieve", name))
    return paths


def _read_file(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        import stat as _stat
        if not _stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or \
                st.st_size > MAX_CACHE_SIZE:
            return None
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _parse_file(data, skey):
    if not data.startswith(MAGIC):
        raise CorruptCacheError("magic")
    body = data[len(MAGIC):]
    if len(body) < 9 or body[8:9] != b"\n":
        raise CorruptCacheError("header")
    crc = int(body[:8], 16)
    payload = body[9:]
    if zlib.crc32(payload) != crc:
        raise CorruptCacheError("checksum")
    record = decode(payload)
    if not isinstance(record, dict) or record.get("settings") != skey:
        raise CorruptCacheError("settings")
    return record


def load_cached(path, env, diag, settings, name=None):
    """The cached Program for path, or a fresh compile saved to the cache.

    Returns False when the caller should compile without the cache (never here;
    kept for callers that disable it), None when the script does not compile.
    """
    from .script import compile_file, script_name
    name = name or script_name(path)
    skey = settings_key(env, settings)
    for cpath in cache_paths(path):
        data = _read_file(cpath)
        if data is None:
            continue
        try:
            record = _parse_file(data, skey)
            program = program_from_data(record.get("program"))
            if program.name != name:
                continue
            fresh = True
            for dep in program.deps:
                if not isinstance(dep, tuple) or len(dep) != 4 or \
                        not isinstance(dep[0], str):
                    raise CorruptCacheError("deps")
                if dep[2] == -1:
                    # A missing :optional include: fresh while it stays missing.
                    if os.path.lexists(dep[0]):
                        fresh = False
                        break
                    continue
                try:
                    if _dep_key(dep[0]) != dep:
                        fresh = False
                        break
                except OSError:
                    fresh = False
                    break
            if fresh and program.deps and \
                    program.deps[0][0] == os.path.realpath(path):
                return program
        except (CorruptCacheError, ValueError, TypeError, KeyError):
            continue
    program, _ = compile_file(path, env, diag, settings.max_script_size, name)
    if program is not None:
        save_program(path, program, settings, env=env)
    return program


def save_program(path, program, settings, out_path=None, env=None):
    """Write program's cache file; return None or a problem description."""
    if env is None:
        from .script import make_env
        env = make_env(settings)
    record = {"settings": settings_key(env, settings),
              "program": program_to_data(program)}
    payload = encode(record)
    data = MAGIC + b"%08x\n" % zlib.crc32(payload) + payload
    targets = [out_path] if out_path else cache_paths(path)
    problem = None
    for target in targets:
        try:
            _write_atomic(target, data)
            return None
        except OSError as exc:
            problem = "cannot write compiled script %s: %s" % (target, exc.strerror)
    return problem


def _write_atomic(target, data):
    directory = os.path.dirname(target) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = "%s.tmp.%d" % (target, os.getpid())
    # why: the directory may be shared with the user's other files; never follow a
    # planted symlink and never write through an existing file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                 os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, target)
    except OSError:
        os.unlink(tmp)
        raise

"""The settings file's cold side: parsing its YAML, opening it safely as root, and
writing the cache (config.py reads the cache on every delivery; this module is
imported only when the YAML must be read: a new or changed file, no usable cache,
or root's `mailslot config`).

    values, problems = parse_yaml(text, path)     # {name: (value, line)}, [ConfigError]
    dir_fd = open_root_directory(head, path)      # as root only
    write_cache(dir_fd, cache_name, key, settings, cache_format)

Errors: ConfigError naming the file and line: unreadable YAML, a top level that is
not a mapping, a key that is not a name or is given twice; as root, a path another
user could change (a symlink, a directory or file not root's or writable by others).
A cache that cannot be written is not an error: the next delivery parses again.

Security: as root the directory is reached from "/" one component at a time, no
symlink followed (O_NOFOLLOW on each), each directory and the file root's and
writable by no one else (a sticky directory such as /tmp excepted: its root-owned
entries cannot be replaced), so the cache every user trusts describes the file the
path names (config.py's notes on the cache). The cache is written beside the file
through the opened directory (openat, then renameat in the same directory): a
reader sees the old cache or the new one, never half, never one elsewhere.
"""

import os

from .errors import ConfigError

_S_ISVTX = 0o1000


def _error(message, path, line=None, key=None):
    return ConfigError(message, file=path, line=line, key=key)


# -- YAML -----------------------------------------------------------------------------

def parse_yaml(text, path):
    """Return ({key: (python value, line)}, [ConfigError]) for the top-level mapping
    of YAML text.

    A key that is not a name, or a name given twice, is an error in the list and is
    skipped; unreadable YAML raises at once."""
    from .sitepath import enable_site_packages
    enable_site_packages()
    import yaml
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, []
        if not isinstance(node, yaml.MappingNode):
            raise _error("expected a mapping of setting: value",
                         path, node.start_mark.line + 1)
        values, problems = {}, []
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(_error("expected a setting name", path, line))
                continue
            name = key_node.value
            if name in values:
                problems.append(_error(f"duplicate setting (first on line {values[name][1]})",
                                       path, line, name))
                continue
            values[name] = (loader.construct_object(value_node, deep=True), line)
        return values, problems
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise _error(f"invalid YAML: {problem}", path, line) from None
    finally:
        loader.dispose()


# -- as root: the path to the file ---------------------------------------------------

def open_root_directory(head, path):
    """Open directory head as root: from "/" one component at a time, no symlink
    followed, each directory root's and writable by no one else (sticky ones
    excepted). Raises ConfigError when another user could change the path."""
    if not head.startswith("/"):
        head = os.getcwd().rstrip("/") + "/" + head
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    shown = ""
    try:
        _check_root_directory(fd, "/", path, sticky_ok=False)
        parts = [p for p in head.split("/") if p and p != "."]
        for i, part in enumerate(parts):
            if part == "..":
                raise _error("refusing '..' in the path as root", path)
            shown += "/" + part
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                              | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                import errno
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):   # a symlink (or a file)
                    raise _error(f"refusing as root: {shown} is a symlink or not a "
                                 "directory (name the real path)", path) from None
                raise
            os.close(fd)
            fd = nxt
            _check_root_directory(fd, shown, path, sticky_ok=True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_root_directory(fd, shown, path, *, sticky_ok):
    st = os.fstat(fd)
    writable = st.st_mode & 0o022
    if st.st_uid != 0 or (writable and not (sticky_ok and st.st_mode & _S_ISVTX)):
        raise _error(f"refusing as root: {shown} is owned by uid {st.st_uid} or "
                     "writable by others, so another user can change the path", path)


# -- the cache --------------------------------------------------------------------------

def serialize_settings(settings):
    """Return the settings as cache lines (every value as text)."""
    out = []
    for name, value in settings.items():     # every setting, in the schema's order
        if name == "namespace":
            for ns_name, ns in value.items():
                for key, item in ns.items():
                    text = ("yes" if item else "no") if isinstance(item, bool) else item
                    out.append(f"namespace/{ns_name}/{key}\t{_escape(text)}")
        elif name == "userdb":
            for i, block in enumerate(value):
                for key, item in block.items():
                    out.append(f"userdb/{i}/{key}\t{_escape(item)}")
        elif isinstance(value, bool):
            out.append(f"{name}\t{'yes' if value else 'no'}")
        else:
            out.append(f"{name}\t{_escape(str(value))}")
    return out


def write_cache(dir_fd, cache_name, key, settings, cache_format):
    """Write the cache in the opened directory: a new file, then renameat."""
    body = ("\n".join([cache_format, key] + serialize_settings(settings)) + "\n").encode("utf-8")
    tmp = f"{cache_name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dir_fd)
    except OSError:
        return                              # not ours to write (or read-only): no cache
    try:
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        # Atomic replace, in the same directory: a reader sees the old cache or the
        # new one, never half, and never one in another directory.
        os.rename(tmp, cache_name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass


def _escape(text):
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

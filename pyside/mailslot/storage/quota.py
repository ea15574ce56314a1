"""Quota: a user's limits checked before each save, the usage counted after it.

    quota = open_quota(storage, settings, clock=time.time)   # settings' quota_*
    result = quota.save(storage, ("Trash",), source)          # check, save, count
    rows = quota.report()        # [(name, "STORAGE"/"MESSAGE", value, limit, %)]
    quota.recalculate()          # `mailslot quota recalc`

This is Dovecot 2.3's quota plugin as a delivery sees it (mail_plugins = quota):

- the rules (quota_rules.py): quota_rule, quota_rule2 ... and quota_grace, from
  the settings or the userdb (a passwd-file's userdb_quota_rule=*:storage=1G);
- the backend, from the `quota` setting ("maildir:User quota", Dovecot's form:
  backend, then the quota root's name shown by `mailslot quota get`). "maildir"
  keeps Maildir++'s maildirsize (quota_maildirsize.py) and needs a Maildir;
  "dirsize" adds up the sizes of the mailbox files at each check (mbox's
  quota: the mbox files' sizes; messages are not counted, so a messages limit
  does not apply to it). An empty `quota` with a rule set picks maildir for
  Maildir and dirsize for mbox.
- the check, before saving into each mailbox (that mailbox's rule: an ignored
  mailbox is neither checked nor counted): over quota when the user is already
  at or over a limit, or when the message would bring them more than
  quota_grace over the byte limit (the message count has no grace). Limits are
  the default rule's unless it sets none (then maildirsize's own first line, as
  Dovecot does). Over quota is errors.QuotaExceededError with
  quota_exceeded_message; a StorageError, so a -m mailbox or a fileinto over its
  quota falls back to INBOX as dovecot-lda does, and only INBOX failing too
  fails the delivery. Whether that is a temporary failure (quota_full_tempfail)
  or a rejection with a DSN is decided by the delivery (deliver.py), not here.
- after the save, one delta line in maildirsize (its size as stored, 1 message).
  Several deliveries may pass the check side by side and together go over the
  limit by up to one message each, as with Dovecot.

Nothing of this is imported on a delivery without quota settings (filing.py
checks config.QUOTA_SETTINGS first; tests/quota/test_imports.py).

Errors: ConfigError (75) for a rule, quota_grace or quota that does not parse;
StorageError (75) when the usage cannot be had (a mailbox that cannot be
listed, the maildirsize lock not had in time); QuotaExceededError.

Security: runs as the mail user; the counting walks only below the storage's
roots without following symlinks (quota_maildirsize.py).
"""

import time

from ..errors import ConfigError, QuotaExceededError, StorageError
from .quota_rules import parse_rules

DEFAULT_QUOTA_NAME = "User quota"
DEFAULT_EXCEEDED_MESSAGE = "Quota exceeded (mailbox for user is full)"
BACKENDS = ("maildir", "dirsize")
# The deepest LAYOUT=fs folder tree counted (a bound on the walk, not a limit
# any real mailbox tree reaches).
MAX_FOLDER_DEPTH = 64


def open_quota(storage, settings, *, clock=time.time):
    """The Quota of storage's user under settings."""
    rules = parse_rules(settings)
    backend_name, root_name = parse_quota_setting(settings.get("quota") or "",
                                                  storage)
    ns = settings.get("namespace", {}).get("inbox", {})
    names = _Names(storage, ns.get("prefix", ""),
                   ns.get("separator") or getattr(storage, "display_separator", None)
                   or storage.default_separator)
    message = settings.get("quota_exceeded_message") or DEFAULT_EXCEEDED_MESSAGE
    if backend_name == "maildir":
        backend = MaildirBackend(storage, rules, names, clock)
    else:
        backend = FilesBackend(storage, rules, names)
    return Quota(root_name, rules, backend, names, message)


def parse_quota_setting(text, storage):
    """(backend, quota root name) of the quota setting "maildir:User quota"."""
    is_maildir = hasattr(storage, "fs_layout")
    if not text:
        return ("maildir" if is_maildir else "dirsize"), DEFAULT_QUOTA_NAME
    backend, _, name = text.partition(":")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown quota backend {backend!r} (mailslot has: "
                          f"{', '.join(BACKENDS)})", key="quota")
    if backend == "maildir" and not is_maildir:
        raise ConfigError("the maildir quota backend needs a Maildir mail_location "
                          "(use dirsize for mbox)", key="quota")
    if ":" in name:
        raise ConfigError(f"quota root parameters are not supported: {text!r}",
                          key="quota")
    return backend, name or DEFAULT_QUOTA_NAME


class Quota:
    """One user's quota root."""

    def __init__(self, name, rules, backend, names, message):
        self.name = name
        self.rules = rules
        self.backend = backend
        self.names = names
        self.message = message

    def _root_limits(self):
        """The configured (bytes, count), or None: maildirsize's own."""
        default = self.rules.default
        if self.rules.default_given or not self.backend.has_file_limits:
            return default.bytes, default.count
        return None

    def save(self, storage, name, source, *, flags=()):
        """Save source into mailbox name if it fits; count it. QuotaExceededError
        when it does not (nothing is saved then)."""
        vname = self.names.vname(name)
        if self.rules.is_ignored(vname):
            return storage.save(name, source, flags=flags)
        size = _size_of(source)
        with self.backend.transaction() as tx:
            usage = tx.usage(self._root_limits())
            self.check(vname, usage, size)
            result = storage.save(name, source, flags=flags)
            warning = tx.add(result.size, 1)
        if warning:
            result.warnings = tuple(getattr(result, "warnings", ()) or ()) + (warning,)
        return result

    def check(self, vname, usage, size):
        """Raise QuotaExceededError when a message of size bytes may not go into
        vname at this usage (Dovecot's quota_test_alloc)."""
        bytes_limit, count_limit, checked = self.rules.limits_for(
            vname, usage.bytes_limit, usage.count_limit)
        if not checked:
            return
        if bytes_limit:
            room = bytes_limit - usage.bytes
            if room <= 0 or size > room + self.rules.grace_bytes(usage.bytes_limit):
                raise QuotaExceededError(self.message)
        if count_limit and usage.count >= count_limit:
            raise QuotaExceededError(self.message)

    def usage(self):
        """The current Usage (refreshed, recalculated when Dovecot would)."""
        with self.backend.transaction() as tx:
            return tx.usage(self._root_limits())

    def recalculate(self):
        return self.backend.recalculate(self._root_limits())

    def report(self, usage=None):
        """doveadm quota get's rows: (quota name, type, value, limit, percent);
        STORAGE in kilobytes rounded up, a missing limit "-"."""
        usage = usage or self.usage()
        rows = []
        value = (usage.bytes + 1023) // 1024
        limit = (usage.bytes_limit + 1023) // 1024
        rows.append((self.name, "STORAGE", str(value), str(limit) if limit else "-",
                     str(value * 100 // limit) if limit else "0"))
        if usage.count is not None:
            limit = usage.count_limit
            rows.append((self.name, "MESSAGE", str(usage.count),
                         str(limit) if limit else "-",
                         str(usage.count * 100 // limit) if limit else "0"))
        return rows


def _size_of(source):
    # size before sizes: a message's sizes include its vsize, a count of its lines
    # (a pass over a large message) that the quota does not need.
    size = getattr(source, "size", None)
    if size is not None:
        return size
    sizes = getattr(source, "sizes", None)
    return sizes[0] if sizes is not None else 0


class _Names:
    """Mailbox names as the user sees them (the namespace's prefix and
    separator), which the rules' masks match."""

    def __init__(self, storage, prefix, separator):
        self.storage, self.prefix, self.separator = storage, prefix, separator

    def vname(self, components):
        if tuple(components) == ("INBOX",):
            return "INBOX"
        return self.prefix + self.separator.join(components)

    def decode(self, part):
        if getattr(self.storage.location, "utf8", False):
            return part
        from ..mailbox_name import decode_mutf7
        from ..errors import MailboxNameError
        try:
            return decode_mutf7(part)
        except MailboxNameError:
            return part


# -- backends -----------------------------------------------------------------------

class MaildirBackend:
    """Maildir++ quota: maildirsize in the control directory."""

    has_file_limits = True

    def __init__(self, storage, rules, names, clock):
        from .quota_maildirsize import MaildirSize
        import os
        self.storage, self.rules, self.names = storage, rules, names
        location = storage.location
        control = location.control or location.root
        try:
            mode = os.stat(control).st_mode & 0o666 | 0o600
        except OSError:
            mode = 0o600
        self.file = MaildirSize(control, count=self.count, clock=clock, file_mode=mode)

    def transaction(self):
        self._ensure_root()
        return _MaildirTransaction(self.file)

    def recalculate(self, limits):
        self._ensure_root()
        return self.file.recalculate(limits)

    def _ensure_root(self):
        """A first delivery finds no Maildir yet: made as the save would make it
        (Dovecot's modes), so that maildirsize has its directory."""
        import os
        if not os.path.isdir(self.file.control_dir):
            self.storage.create_mailbox(("INBOX",))

    def count(self):
        """(bytes, messages) of every mailbox the rules do not ignore."""
        from .quota_maildirsize import sum_maildir
        total_bytes = total_count = 0
        for vname, path in maildir_mailboxes(self.storage, self.names):
            if self.rules.is_ignored(vname):
                continue
            size, count = sum_maildir(path)
            total_bytes += size
            total_count += count
        return total_bytes, total_count


class _MaildirTransaction:
    def __init__(self, file):
        self.file = file
        self.lock = file.locked()

    def __enter__(self):
        self.lock.__enter__()
        return self

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)

    def usage(self, limits):
        return self.file.refresh(limits)

    def add(self, size, count):
        return self.file.append(size, count)


def maildir_mailboxes(storage, names):
    """(vname, path) of INBOX and every folder of a Maildir storage."""
    import os
    location = storage.location
    yield "INBOX", location.inbox or location.root
    root = location.root
    if storage.fs_layout:
        yield from _fs_folders(root, (), names, 0)
        return
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"quota: cannot list {root}: {exc.strerror}") from None
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or name in (".", "..") or \
                not entry.is_dir(follow_symlinks=False):
            continue
        parts = tuple(names.decode(part) for part in name[1:].split("."))
        yield names.vname(parts), f"{root}/{name}"


def _fs_folders(path, parts, names, depth):
    import os
    if depth >= MAX_FOLDER_DEPTH:
        return
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise StorageError(f"quota: cannot list {path}: {exc.strerror}") from None
    for entry in entries:
        name = entry.name
        if name in ("cur", "new", "tmp") or name.startswith(".") or \
                not entry.is_dir(follow_symlinks=False):
            continue
        child = f"{path}/{name}"
        child_parts = parts + (names.decode(name),)
        if any(os.path.isdir(f"{child}/{sub}") for sub in ("cur", "new")):
            yield names.vname(child_parts), child
        yield from _fs_folders(child, child_parts, names, depth + 1)


class FilesBackend:
    """dirsize: the usage is the mailbox files' sizes, added up at each check
    (mbox files; for a Maildir its message files). No file of its own."""

    has_file_limits = False

    def __init__(self, storage, rules, names):
        self.storage, self.rules, self.names = storage, rules, names

    def transaction(self):
        return _FilesTransaction(self)

    def recalculate(self, limits):
        return _FilesTransaction(self).usage(limits)

    def measure(self):
        """(bytes, messages or None)."""
        if hasattr(self.storage, "fs_layout"):
            from .quota_maildirsize import sum_maildir
            total = [0, 0]
            for vname, path in maildir_mailboxes(self.storage, self.names):
                if not self.rules.is_ignored(vname):
                    size, count = sum_maildir(path)
                    total[0] += size
                    total[1] += count
            return total[0], total[1]
        return _mbox_bytes(self.storage, self.rules, self.names), None


class _FilesTransaction:
    def __init__(self, backend):
        self.backend = backend

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def usage(self, limits):
        from .quota_maildirsize import Usage
        total_bytes, total_count = self.backend.measure()
        bytes_limit, count_limit = limits or (0, 0)
        return Usage(total_bytes, total_count, bytes_limit,
                     count_limit if total_count is not None else 0)

    def add(self, size, count):
        return None


def _mbox_bytes(storage, rules, names):
    """The sizes of the mbox files: INBOX and every file below the root (dot
    files, such as .subscriptions and Dovecot's .imap index directories, are
    not mail)."""
    import os
    location = storage.location
    total = 0
    seen = set()
    inbox = location.inbox
    if inbox:
        try:
            st = os.lstat(inbox)
            if (st.st_mode & 0o170000) == 0o100000 and not rules.is_ignored("INBOX"):
                total += st.st_size
                seen.add((st.st_dev, st.st_ino))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"quota: cannot stat {inbox}: {exc.strerror}") from None
    stack = [(location.root, (), 0)]
    while stack:
        path, parts, depth = stack.pop()
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise StorageError(f"quota: cannot list {path}: {exc.strerror}") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child_parts = parts + (names.decode(entry.name),)
            st = entry.stat(follow_symlinks=False)
            if (st.st_mode & 0o170000) == 0o040000:
                if depth + 1 < MAX_FOLDER_DEPTH:
                    stack.append((entry.path, child_parts, depth + 1))
            elif (st.st_mode & 0o170000) == 0o100000 and (st.st_dev, st.st_ino) not in seen:
                vname = "INBOX" if entry.path == inbox else names.vname(child_parts)
                if not rules.is_ignored(vname):
                    total += st.st_size
    return total

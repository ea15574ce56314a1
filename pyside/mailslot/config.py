"""Settings: Dovecot's setting names in a YAML file, -o overrides, userdb overrides.

load_settings(path) returns a plain dict of every setting (defaults filled in),
validated against SCHEMA. Precedence, lowest first: built-in defaults, the file,
userdb fields (apply_overrides(..., source="userdb")), -o key=value.

The pipe path must not pay for a YAML parser on every message, so a validated copy of
the parsed file is cached beside it (".<name>.cache") in a line format read without
any import, keyed on the opened file's device, inode, size, mtime and ctime. The
directory and the file are opened once and the key, the YAML and the cache all go
through those descriptors (openat/renameat), so swapping a symlink between the steps
cannot pair one file's key with another's settings. The cache is used only when it
is a regular file owned by root or by us, writable by nobody else, and read whole
(at most CACHE_MAX_BYTES, else the YAML is parsed); its values pass the same
validation as the YAML. It is written only where the running user may write. As
root (the admin's `mailslot config` or `mailslot user -c`, whose cache every user
then trusts), a file whose path another user could change -- a directory on the way
or the file not root's or writable by others, a symlink anywhere -- is refused.
The parts a delivery with a fresh cache never runs -- the YAML parser, the root-safe
walk to the file, writing the cache -- are in config_file.py, imported only then.

Errors: every problem is a ConfigError naming the file, the line and the key: an
unknown key, a bad value, an unknown %variable, unreadable YAML, a file root must
refuse. ConfigError is a temporary failure (75): a typo must never bounce mail. A
file (or a set of -o options) with several mistakes is reported whole, so that one
round of editing fixes them all: one ConfigError whose message lists each mistake
with its line, at most MAX_REPORTED_ERRORS of them (and how many more there are);
its .errors holds them. Unreadable YAML is one error: the parser cannot go on past it.
"""

import os

DEFAULT_CONFIG_PATH = "/etc/mailslot/mailslot.yaml"
# The most settings errors one report lists (the rest are counted): enough for any
# file a person edits, and the one line the MTA logs for the deferral stays short.
MAX_REPORTED_ERRORS = 20
CACHE_FORMAT = "mailslot-settings 1"

BOOL_WORDS = {"yes": True, "true": True, "on": True, "1": True,
              "no": False, "false": False, "off": False, "0": False}
SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
              "g": 1024 ** 3, "gb": 1024 ** 3}
TIME_UNITS = {"": 1, "s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60,
              "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400,
              "days": 86400}

SYSLOG_FACILITIES = ("mail", "daemon", "user", "local0", "local1", "local2", "local3",
                     "local4", "local5", "local6", "local7")

# Dovecot 2.3's default (doveconf -d postmaster_address): postmaster at the user's
# domain, or at the host name (%{hostname}: the hostname setting, else the
# system's) for a user without one. The only %{if;...} form mailslot knows
# (postmaster_template); any other is refused as variables.py says.
POSTMASTER_DEFAULT = "postmaster@%{if;%d;ne;;%d;%{hostname}}"

# name: (type, default). Types: str, words (a list), bool, int, size, time,
# ("enum", ...), "namespace", "userdb". Names and defaults are Dovecot's (2.3) and
# Pigeonhole's unless a comment
# says why not.
SCHEMA = {
    "mail_location": ("str", "maildir:~/Maildir"),
    "namespace": ("namespace", None),
    "hostname": ("str", ""),                      # "" = the system's host name
    "postmaster_address": ("str", POSTMASTER_DEFAULT),
    # Dovecot's default is "no"; mailslot creates a missing -m mailbox unless -n or
    # "no" is set, as its issue asks. README names the difference.
    "lda_mailbox_autocreate": ("bool", True),
    "lda_mailbox_autosubscribe": ("bool", False),
    "lda_original_recipient_header": ("str", ""),
    "recipient_delimiter": ("str", "+"),
    "mail_fsync": (("enum", "optimized", "always", "never"), "optimized"),
    "mail_temp_dir": ("str", "/tmp"),
    "log_path": ("str", "syslog"),
    "info_log_path": ("str", ""),
    "syslog_facility": (("enum",) + SYSLOG_FACILITIES, "mail"),
    "deliver_log_format": ("str", "msgid=%m: %$"),
    "first_valid_uid": ("int", 500),
    "last_valid_uid": ("int", 0),
    "first_valid_gid": ("int", 1),
    "last_valid_gid": ("int", 0),
    "mail_privileged_group": ("str", ""),
    # mbox (Dovecot's names and defaults): lock methods in the order they are
    # taken, the whole wait for them, when an untouched dotlock is stale.
    "mbox_write_locks": ("str", "fcntl dotlock"),      # Debian's Dovecot's order
    "mbox_read_locks": ("str", "fcntl"),
    "mbox_lock_timeout": ("time", 300),
    "mbox_dotlock_change_timeout": ("time", 120),
    # mailslot's own (Dovecot quotes nothing and relies on Content-Length): how body
    # lines that could look like a message boundary are quoted, mboxrd (">From "
    # lines too, reversibly) or mboxo (only "From " lines).
    "mbox_variant": (("enum", "mboxrd", "mboxo"), "mboxrd"),
    "userdb": ("userdb", None),
    # How Dovecot's auth process normalises a name before any userdb sees it
    # (src/auth/auth-settings.c); userdb.normalize_username applies them.
    "auth_default_realm": ("str", ""),
    "auth_username_chars": ("str", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "01234567890.-_@"),
    "auth_username_translation": ("str", ""),
    "auth_username_format": ("str", "%Lu"),
    # The dovecot userdb's socket: dovecot-lda's "auth-userdb" under Dovecot's
    # default base_dir.
    "auth_socket_path": ("str", "/var/run/dovecot/auth-userdb"),
    # mailslot's own: the most one userdb block may take to answer (connect and
    # query), so a hung database defers mail (75) instead of holding it. Below the
    # relay's 30 s for its lookup child (helper_c, LOOKUP_TIMEOUT_MS).
    "userdb_timeout": ("time", 10),
    # Outgoing mail (send/): sendmail_path unless submission_host ("host[:port]")
    # is set. submission_ssl/_user/_password are mailslot's own (Dovecot's
    # submission_ssl has the same values); a password here needs a file only the
    # delivery's users can read.
    "sendmail_path": ("str", "/usr/sbin/sendmail"),
    "submission_host": ("str", ""),
    "submission_timeout": ("time", 30),
    "submission_ssl": (("enum", "no", "starttls", "smtps"), "no"),
    "submission_user": ("str", ""),
    "submission_password": ("str", ""),
    # Sieve reject's report; %n newline, %r reason, %s subject, %t recipient.
    "rejection_subject": ("str", "Rejected: %s"),
    "rejection_reason": ("str", "Your message to <%t> was automatically rejected:%n%r"),
    # Quota (storage/quota.py; Dovecot's quota plugin settings): the backend and
    # root name, the rules (quota_rule, quota_rule2 ... quota_rule9), the
    # grace for the last message, the reason given, and tempfail or bounce.
    "quota": ("str", ""),
    "quota_rule": ("str", ""),
    **{f"quota_rule{i}": ("str", "") for i in range(2, 10)},
    "quota_grace": ("str", "10%"),
    "quota_exceeded_message": ("str", "Quota exceeded (mailbox for user is full)"),
    "quota_full_tempfail": ("bool", False),
    # LMTP (mailslot-lmtpd). lmtp_listen is mailslot's own: "unix:PATH" and
    # "HOST:PORT" listeners, ignored under systemd socket activation.
    # lmtp_message_size_limit is mailslot's own too (SIZE, RFC 1870; 0: no limit).
    # The others are Dovecot's names and defaults.
    "lmtp_listen": ("words", "unix:/run/mailslot/lmtp"),
    "lmtp_message_size_limit": ("size", 0),
    # mailslot's own: connections served at once; one more is answered 421 (Dovecot
    # bounds its lmtp service with process_limit, 100 by default).
    "lmtp_max_connections": ("int", 100),
    # mailslot's own: worker processes serving the listeners ("auto": one per CPU the
    # daemon may run on); 1 is one process (mailslot-lmtpd(8), lmtp/supervisor.py).
    "lmtp_processes": ("str", "1"),
    "lmtp_save_to_detail_mailbox": ("bool", False),
    "lmtp_hdr_delivery_address": (("enum", "final", "none", "original"), "final"),
    "lmtp_user_concurrency_limit": ("int", 0),
    "lmtp_rcpt_check_quota": ("bool", False),
    # mailslot's own: multi-uid sites; a recipient of another uid than the server's
    # is delivered through this relay (mailslot-lmtpd(8)); "" refuses them (451).
    "lmtp_relay_path": ("str", ""),
    # mailslot's own, read by mailslot-handoffd at its start (the fast path): the
    # hand-offs one worker serves before it is replaced (as Postfix's max_use; 1:
    # a fresh fork for every delivery) and how long one that has served waits for
    # another (as Postfix's max_idle).
    "handoff_worker_max_use": ("int", 100),
    "handoff_worker_max_idle": ("time", 100),
    # Pigeonhole.
    "sieve": ("str", "file:~/sieve;active=~/.dovecot.sieve"),
    "sieve_default": ("str", ""),
    "sieve_before": ("str", ""),
    "sieve_before2": ("str", ""),
    "sieve_before3": ("str", ""),
    "sieve_after": ("str", ""),
    "sieve_after2": ("str", ""),
    "sieve_after3": ("str", ""),
    "sieve_discard": ("str", ""),
    "sieve_global": ("str", ""),
    "sieve_extensions": ("str", ""),
    "sieve_global_extensions": ("str", ""),
    "sieve_user_log": ("str", ""),
    "sieve_max_script_size": ("size", 1024 ** 2),
    "sieve_max_actions": ("int", 32),
    "sieve_max_redirects": ("int", 4),
    "sieve_max_cpu_time": ("time", 30),
    "sieve_user_email": ("str", ""),
    "sieve_redirect_envelope_from": ("str", "sender"),
    "sieve_redirect_duplicate_period": ("time", 12 * 3600),
    "sieve_vacation_min_period": ("time", 24 * 3600),
    "sieve_vacation_max_period": ("time", 0),            # 0: no upper bound
    "sieve_vacation_default_period": ("time", 7 * 24 * 3600),
    "sieve_vacation_max_subject_codepoints": ("int", 256),
    "sieve_vacation_default_subject": ("str", ""),
    "sieve_vacation_default_subject_template": ("str", ""),
    "sieve_notify_mailto_envelope_from": ("str", ""),
    "sieve_vacation_use_original_recipient": ("bool", False),
    "sieve_vacation_dont_check_recipient": ("bool", False),
    "sieve_vacation_send_from_recipient": ("bool", False),
    "sieve_vacation_to_header_ignore_envelope": ("bool", False),
    "sieve_duplicate_default_period": ("time", 12 * 3600),
    "sieve_duplicate_max_period": ("time", 2 * 24 * 3600),
    # mailslot's own: the memory a Sieve run may use beyond one copy of the message
    # (sieve/memory.py: DEFAULT_MAX_MEMORY).
    "sieve_max_memory": ("size", 32 * 1024 ** 2),
}

# A delivery looks at quota (storage/quota.py, imported only then) when one of
# these is set.
QUOTA_SETTINGS = ("quota", "quota_rule") + tuple(f"quota_rule{i}" for i in range(2, 10))

NAMESPACE_KEYS = {"prefix": "str", "separator": "str", "inbox": "bool"}
USERDB_KEYS = ("driver", "args", "default_fields", "override_fields")

# Settings whose values carry %variables expanded per user at delivery time.
USER_TEMPLATES = ("mail_location", "postmaster_address", "log_path", "info_log_path",
                  "mail_temp_dir", "sieve", "sieve_default", "sieve_before",
                  "sieve_before2", "sieve_before3", "sieve_after", "sieve_after2",
                  "sieve_after3", "sieve_discard", "sieve_global", "sieve_user_log")
# The USER_TEMPLATES that name files or Sieve locations (a recipient's value there is
# checked as a path component, variables.expand_path); mail_location is its own case.
PATH_TEMPLATES = frozenset(USER_TEMPLATES) - {"mail_location", "postmaster_address"}


def default_settings():
    """Return a fresh dict of every setting at its default."""
    settings = {name: default for name, (_, default) in SCHEMA.items()}
    settings["namespace"] = {"inbox": {"prefix": "", "separator": "", "inbox": True}}
    settings["userdb"] = [{"driver": "passwd", "args": ""}]
    return settings


# -- loading --------------------------------------------------------------------------

def load_settings(path=None, *, use_cache=True):
    """Load and validate the settings file at path (default DEFAULT_CONFIG_PATH).

    A missing default file means the built-in defaults; a missing file named with
    -c is an error. The directory and the file are opened once: the cache key, the
    YAML and the cache all come from those open descriptors (see "the cache").
    """
    explicit = path is not None
    path = path or DEFAULT_CONFIG_PATH
    opened = _open_config(path, explicit)
    if opened is None:
        return default_settings()
    dir_fd, fd, st = opened
    try:
        key = _cache_key(st)
        cache_name = _cache_name(path)
        if use_cache:
            cached = _read_cache(dir_fd, cache_name, key)
            if cached is not None:
                return cached
        _step("file-opened")
        found = _Errors(path)
        values, problems = _parse_yaml(_read_config(fd, path), path)
        for problem in problems:
            found.add(problem)
        settings = default_settings()
        for name, (value, line) in values.items():
            with found.collect():
                _apply(settings, name, value, path=path, line=line, from_text=False)
        found.raise_any()
        # Cache only what was read from a file that did not change meanwhile.
        if use_cache and _cache_key(os.fstat(fd)) == key:
            _step("before-cache-write")
            from .config_file import write_cache
            write_cache(dir_fd, cache_name, key, settings, CACHE_FORMAT)
        return settings
    finally:
        os.close(fd)
        os.close(dir_fd)


def apply_overrides(settings, pairs, *, source):
    """Apply (key, value-as-text) pairs: -o options or userdb fields.

    Keys are setting names, or namespace/<name>/<key> as in Dovecot. source names
    where they came from in error messages ("-o", "userdb").
    """
    found = _Errors(source)
    for key, value in pairs:
        with found.collect():
            _apply(settings, key, value, path=source, line=None, from_text=True)
    found.raise_any()


def expand_user_settings(settings, values):
    """Expand %variables in the per-user settings (mail_location, log paths ...).

    A recipient's value that cannot be part of the path a setting builds (see
    variables.expand_path: "..@ex.org" in maildir:/srv/%d/%n) is refused:
    errors.UserUnknownError, as a userdb refuses such a name."""
    from .variables import UnsafeValueError, expand, expand_path
    for name in USER_TEMPLATES:
        text = settings.get(name)
        if text and "%" in text:
            try:
                if name == "mail_location":
                    settings[name] = expand_path(text, values, location=True)
                elif name in PATH_TEMPLATES:
                    settings[name] = expand_path(text, values, separators="/;:",
                                                 refuse=";")
                else:
                    if name == "postmaster_address":
                        text = postmaster_template(text, values)
                    settings[name] = expand(text, values)
            except UnsafeValueError as exc:
                from .errors import UserUnknownError
                raise UserUnknownError(
                    f"User doesn't exist: {values.get('user', '')!r} cannot name a "
                    f"place on disk ({name}: {exc})") from None
            except ValueError as exc:
                raise _error(str(exc), None, key=name) from None
    return settings


# -- validation -----------------------------------------------------------------------

def _apply(settings, name, value, *, path, line, from_text, check_templates=True):
    if "/" in name and name.startswith("namespace/"):
        parts = name.split("/")
        if len(parts) != 3:
            raise _error("expected namespace/<name>/<key>", path, line, name)
        value = {parts[1]: {parts[2]: value}}
        name = "namespace"
    spec = SCHEMA.get(name)
    if spec is None:
        raise _error("unknown setting", path, line, name)
    kind = spec[0]
    if kind == "namespace":
        _apply_namespace(settings, value, path, line, from_text)
    elif kind == "userdb":
        settings["userdb"] = _convert_userdb(value, path, line)
    else:
        settings[name] = _convert(kind, value, path, line, name)
        if check_templates and (kind == "str" and name in USER_TEMPLATES
                                or name == "deliver_log_format"):
            _check_template(settings[name], path, line, name)
        if check_templates and settings[name] and (name in QUOTA_SETTINGS
                                                   or name == "quota_grace"):
            # A quota rule is checked where it is written (the file's line, the
            # userdb, -o), so `mailslot config` finds it before a delivery does.
            from .storage.quota_rules import check_setting
            try:
                check_setting(name, settings[name])
            except ValueError as exc:
                raise _error(str(exc), path, line, name) from None


def _convert(kind, value, path, line, name):
    if isinstance(kind, tuple):
        text = _as_text(value, path, line, name)
        if text not in kind[1:]:
            raise _error(f"invalid value {text!r}, expected one of: "
                         + ", ".join(kind[1:]), path, line, name)
        return text
    if kind == "words":
        # A YAML list, or one string of words: kept as one space-separated string.
        items = value if isinstance(value, list) else \
            _as_text(value, path, line, name).split()
        words = [_as_text(item, path, line, name) for item in items]
        if any(not w or w.split() != [w] for w in words):
            raise _error("an item is empty or contains white space", path, line, name)
        return " ".join(words)
    if kind == "str":
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            raise _error("expected a string", path, line, name)
        if isinstance(value, bool):
            return "yes" if value else "no"
        return str(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        word = _as_text(value, path, line, name).lower()
        if word not in BOOL_WORDS:
            raise _error(f"invalid boolean {value!r} (use yes or no)", path, line, name)
        return BOOL_WORDS[word]
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = _as_text(value, path, line, name)
            if not text.isdigit():
                raise _error(f"invalid number {text!r}", path, line, name)
            number = int(text)
        if number < 0:
            raise _error("must not be negative", path, line, name)
        return number
    if kind in ("size", "time"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return _parse_unit(_as_text(value, path, line, name),
                           SIZE_UNITS if kind == "size" else TIME_UNITS, path, line, name)
    raise AssertionError(kind)  # pragma: no cover - SCHEMA is fixed


def _parse_unit(text, units, path, line, name):
    text = text.strip().lower()
    digits = len(text) - len(text.lstrip("0123456789"))
    number, unit = text[:digits], text[digits:].strip()
    if not number or unit not in units:
        raise _error(f"invalid value {text!r}", path, line, name)
    return int(number) * units[unit]


def _apply_namespace(settings, value, path, line, from_text):
    if not isinstance(value, dict):
        raise _error("expected a mapping of namespaces", path, line, "namespace")
    for ns_name, ns in value.items():
        if ns_name != "inbox":
            raise _error(f"only the inbox namespace is supported, not {ns_name!r}",
                         path, line, "namespace")
        if not isinstance(ns, dict):
            raise _error("expected a mapping", path, line, f"namespace/{ns_name}")
        target = settings["namespace"].setdefault(ns_name, {})
        for key, item in ns.items():
            kind = NAMESPACE_KEYS.get(key)
            full = f"namespace/{ns_name}/{key}"
            if kind is None:
                raise _error("unknown setting", path, line, full)
            target[key] = _convert(kind, item, path, line, full)
        if len(target.get("separator", "")) > 1:
            raise _error("separator must be one character", path, line,
                         f"namespace/{ns_name}/separator")


def _convert_userdb(value, path, line):
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _error("expected a list of userdb blocks", path, line, "userdb")
    blocks = []
    for item in value:
        if not isinstance(item, dict) or "driver" not in item:
            raise _error("each userdb needs a driver", path, line, "userdb")
        for key in item:
            if key not in USERDB_KEYS:
                raise _error("unknown setting", path, line, f"userdb/{key}")
        blocks.append({key: "" if item.get(key) is None else str(item.get(key))
                       for key in USERDB_KEYS if key in item or key == "args"})
    return blocks


def _check_template(text, path, line, name):
    if "%" not in text:
        return
    from .variables import expand, user_values
    sample = user_values("u@d", "/h")
    sample.update(hostname="h", pid="1")
    try:
        if name == "deliver_log_format":
            from .log import check_log_format
            check_log_format(text)
        else:
            if name == "postmaster_address":
                text = postmaster_template(text, sample)
            expand(text, sample)
    except ValueError as exc:
        raise _error(str(exc), path, line, name) from None


def postmaster_template(text, values):
    """Dovecot's default postmaster_address (POSTMASTER_DEFAULT) as the template
    it amounts to for these values: postmaster@%d when the user has a domain,
    else postmaster@%{hostname} (never an empty "postmaster@"); any other text as
    it is."""
    if text != POSTMASTER_DEFAULT:
        return text
    return "postmaster@%d" if values.get("domain") else "postmaster@%{hostname}"


def _as_text(value, path, line, name):
    if isinstance(value, (dict, list)) or value is None:
        raise _error("expected a single value", path, line, name)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _error(message, path, line=None, key=None):
    from .errors import ConfigError
    return ConfigError(message, file=path, line=line, key=key)


class _Errors:
    """The ConfigErrors of one file (or one set of overrides), reported together."""

    def __init__(self, path):
        self.path, self.errors, self.count = path, [], 0

    def add(self, exc):
        self.count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(exc)

    def collect(self):
        return _Collect(self)

    def raise_any(self):
        """Raise nothing, the one error, or one ConfigError listing them all."""
        if not self.errors:
            return
        if self.count == 1:
            raise self.errors[0]
        self.errors.sort(key=lambda e: e.line or 0)     # in the order of the file
        # Each part without the file name the whole message starts with:
        # "line 3: mail_fsync: invalid value ...".
        parts = [str(e).removeprefix(f"{e.file} ").removeprefix(f"{e.file}: ")
                 if e.file is not None else str(e) for e in self.errors]
        more = self.count - len(self.errors)
        tail = f"; and {more} more" if more else ""
        exc = _error(f"{self.count} errors: " + "; ".join(parts) + tail, self.path)
        exc.errors = list(self.errors)
        raise exc


class _Collect:
    """with errors.collect(): a ConfigError in the block is noted, not raised."""

    def __init__(self, errors):
        self.errors = errors

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from .errors import ConfigError
        if isinstance(exc, ConfigError):
            self.errors.add(exc)
            return True
        return False


# -- YAML -----------------------------------------------------------------------------

def _parse_yaml(text, path):
    """({key: (python value, line)}, [ConfigError]) for the file's YAML
    (config_file.parse_yaml: the parser is imported only when a file is parsed)."""
    from .config_file import parse_yaml
    return parse_yaml(text, path)


# -- opening the file, and the cache ----------------------------------------------------
#
# Root runs `mailslot config` / `mailslot user -c` to refresh a cache every user then
# trusts (issue 20.2: a user who flips a symlinked directory between the steps must
# not get a root-owned cache with their mail_location under the real file's key). So
# the directory is opened once and everything happens relative to that descriptor:
# the key is the opened file's fstat, the YAML is read from the same descriptor, the
# cache is read with openat and written with openat + renameat in that directory.
# As root, the directory is reached from "/" one component at a time without
# following a symlink, every directory on the way and the file must be root's and
# writable by no one else (a sticky directory such as /tmp excepted: its root-owned
# entries cannot be replaced), else the file is refused (ConfigError).

# A settings cache is a few KiB; a larger one is refused (the YAML is parsed) rather
# than read in part. The YAML file itself is bounded too.
CACHE_MAX_BYTES = 4 * 1024 * 1024
CONFIG_MAX_BYTES = 16 * 1024 * 1024
_S_IFMT, _S_IFREG = 0o170000, 0o100000
# Tests set this to a function of one step name, called between the steps that open
# and use the files (they swap symlinks there); None in production.
_step_hook = None


def _step(name):
    if _step_hook is not None:
        _step_hook(name)


def _open_config(path, explicit):
    """Return (directory fd, file fd, file stat) for path, or None when the default
    file does not exist. Raises ConfigError for anything else."""
    head, _, name = path.rpartition("/")
    if not head:
        head = "/" if path.startswith("/") else "."
    if not name or name in (".", ".."):
        raise _error("not a file name", path)
    as_root = os.geteuid() == 0
    try:
        if as_root:
            from .config_file import open_root_directory
            dir_fd = open_root_directory(head, path)
        else:
            dir_fd = os.open(head, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        if explicit:
            raise _error("configuration file not found", path) from None
        return None
    except OSError as exc:
        raise _error(f"cannot open the configuration's directory: {exc.strerror}",
                     path) from None
    try:
        _step("directory-opened")
        # Root follows no symlink here: the file must be where the path says.
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if as_root else 0)
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
        except FileNotFoundError:
            if explicit:
                raise _error("configuration file not found", path) from None
            os.close(dir_fd)
            return None
        except OSError as exc:
            import errno
            if as_root and exc.errno == errno.ELOOP:     # O_NOFOLLOW met a symlink
                raise _error("refusing a symlink as root (name the file itself)",
                             path) from None
            raise _error(f"cannot open configuration: {exc.strerror}", path) from None
        st = os.fstat(fd)
        if st.st_mode & _S_IFMT != _S_IFREG:
            os.close(fd)
            raise _error("not a regular file", path)
        if as_root and (st.st_uid != 0 or st.st_mode & 0o022):
            os.close(fd)
            raise _error(f"refusing as root: the file is owned by uid {st.st_uid} or "
                         "writable by others, so another user can change it", path)
        return dir_fd, fd, st
    except BaseException:
        os.close(dir_fd)
        raise


def _read_whole(fd, limit):
    """All of fd's bytes, or None when there are more than limit."""
    chunks, size = [], 0
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def _read_config(fd, path):
    try:
        data = _read_whole(fd, CONFIG_MAX_BYTES)
    except OSError as exc:
        raise _error(f"cannot read configuration: {exc.strerror}", path) from None
    if data is None:
        raise _error(f"larger than {CONFIG_MAX_BYTES} bytes", path)
    return data


def _cache_name(path):
    return f".{path.rpartition('/')[2]}.cache"


def _cache_key(st):
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _read_cache(dir_fd, cache_name, key):
    try:
        fd = os.open(cache_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        # Trust only a regular file that root or we own and nobody else can write.
        if (st.st_mode & _S_IFMT) != _S_IFREG or st.st_uid not in (0, os.geteuid()) \
                or st.st_mode & 0o022:
            return None
        # Read whole, or not at all: a cut cache would read "43000" as "43".
        data = _read_whole(fd, CACHE_MAX_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    if data is None:
        return None
    lines = data.decode("utf-8", "replace").split("\n")
    if len(lines) < 2 or lines[0] != CACHE_FORMAT or lines[1] != key:
        return None
    settings = default_settings()
    userdb = {}
    try:
        for entry in lines[2:]:
            if not entry:
                continue
            name, value = entry.split("\t", 1)
            value = _unescape(value)
            spec = SCHEMA.get(name)
            if spec is not None and spec[0] in _CACHE_KINDS:
                settings[name] = _cached_value(spec[0], value)
            elif name.startswith("userdb/"):
                _, index, key = name.split("/")
                userdb.setdefault(int(index), {})[key] = value
            else:
                # Templates were checked when the cache was written, and a bad one
                # still fails at expansion (a ConfigError, 75): not again per message.
                _apply(settings, name, value, path="cache", line=None, from_text=True,
                       check_templates=False)
        if userdb:
            settings["userdb"] = _convert_userdb(
                [userdb[i] for i in sorted(userdb)], "cache", None)
    except ValueError:
        return None
    except Exception as exc:
        from .errors import ConfigError
        if isinstance(exc, ConfigError):  # the cache is not trustworthy: reparse
            return None
        raise
    return settings


# The kinds whose cache text (as config_file.serialize_settings writes it) is read
# here directly: the common settings, without the general validator's cost.
_CACHE_KINDS = frozenset(("str", "bool", "int", "size", "time"))


def _cached_value(kind, text):
    """A str, bool or number setting from its cache text; ValueError if invalid."""
    if kind == "str":
        return text                 # any text is a valid string setting
    if kind == "bool":
        if text not in BOOL_WORDS:
            raise ValueError(text)
        return BOOL_WORDS[text]
    if not text.isdigit():          # numbers are written in plain digits, never < 0
        raise ValueError(text)
    return int(text)


def _unescape(text):
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append({"t": "\t", "n": "\n", "\\": "\\"}.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)

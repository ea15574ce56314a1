"""The user database: who a recipient is (uid, gid, home) and their per-user settings.

lookup() walks a list of userdb blocks shaped like Dovecot's

    [{"driver": "passwd-file", "args": "username_format=%n /etc/mailslot/users",
      "default_fields": "home=/srv/mail/%d/%n", "override_fields": ""},
     {"driver": "passwd"}]

and returns the User of the first block that knows the name, or None. A block's
keys: driver, args, default_fields, override_fields (both "key=value ..." with
%variables, applied before and after the driver's answer, as in Dovecot), name.
Drivers are a small registry (DRIVERS, register_driver); a driver returns a dict of
string fields ("uid", "gid", "home", "user", "mail", ...) or None for "unknown".
The drivers that need more than the standard library live in their own modules and
are imported only when a block names them (LAZY_DRIVERS), so the plain passwd-file
path stays lean: static (userdb/static.py), sql (userdb/sql.py: SQLite, PostgreSQL)
and dovecot (userdb/dovecot.py: Dovecot's auth-master socket). Drivers registered with
settings=True also receive the settings dict (timeouts, auth_socket_path).

normalize_username() turns a recipient into the name the userdbs are asked for,
as Dovecot's auth process does (auth_default_realm, auth_username_translation,
auth_username_chars, auth_username_format); a name it refuses is an unknown user.

Drivers here:
  passwd       the system users through NSS (pwd.getpwnam). args: "blocking=..."
               is accepted and ignored; other key=value pairs are old-style
               override templates (Dovecot warns about them; so do we).
  passwd-file  Dovecot's format, user:password:uid:gid:gecos:home:shell:extra,
               read as Dovecot 2.3's db-passwd-file.c reads it: empty lines and
               lines starting with '#' or ':' are skipped; uid and gid are numbers
               or user/group names; an empty uid, gid or home is "not given" (so
               default_fields can supply it); a line with fewer than four fields is
               a passdb-only entry that the userdb does not know; extra fields are
               the rest of the line (':' kept), split on spaces, and only
               "userdb_"-prefixed ones are used, prefix stripped, values
               %-expanded; an empty eighth field makes the ninth the old-style
               "mail" field. args: [username_format=FMT] [scheme=S] PATH, where
               PATH may hold %variables for per-domain files (/etc/mail/%d/users).

Errors: a block that cannot answer -- a file missing or unreadable, an unknown driver,
bad args, a field that does not expand, no uid or gid in the answer -- raises
errors.UserdbError, which is temporary: mail must never bounce because a database is
broken. Unlike Dovecot (which tries the next userdb after an internal failure), the
walk stops there: a later userdb must not answer for a user the broken one might
know. Lines that are malformed (an invalid or zero uid, a duplicate user) are
skipped as Dovecot skips them, with a warning string collected for the caller's log.
One difference in the caller's favour: a missing file whose path has no %variables
is an error here, where Dovecot treats it as "no users".

Security: the engine runs as the target user, never root, so reading a file here
grants nothing. A per-domain path is built from the recipient's name, which the
sender controls: as in Dovecot each value is cut at its first '/', and a path that
still has a "." or ".." component (bob@..) is refused as an unknown user. uid 0 on a
passwd-file line is refused as in Dovecot; the caller enforces first/last_valid_uid.
Limits of the passwd driver: Python's pwd module reports an NSS failure as "no such
user", so a broken NSS backend (LDAP down) looks like an unknown user.
"""

import os
import pwd
import sys

from mailslot import errors
from mailslot.user import current_user  # noqa: F401 (handed on)
from mailslot.variables import escape, expand, referenced, user_values
from mailslot.userdb.common import User, expand_field, printable, setting, template_fields

# (uid_t)-1 means "unset" to the kernel and to Dovecot; it is never a valid id.
MAX_ID = 0xFFFFFFFE

# Keys a userdb block may have (Dovecot's userdb { } settings that apply here).
BLOCK_KEYS = frozenset({"driver", "args", "default_fields", "override_fields", "name"})

# Dovecot's default username_format for passwd-file (PASSWD_FILE_DEFAULT_USERNAME_FORMAT).
DEFAULT_USERNAME_FORMAT = "%u"

# Fields that become User attributes rather than entries of User.fields.
_IDENTITY_FIELDS = ("user", "uid", "gid", "home")

# Drivers in their own modules, imported when a block first names them: name ->
# (module, function, whether it takes the settings). The modules import only
# userdb.common, never this walker, so the import graph has no cycle.
LAZY_DRIVERS = {
    "static": ("mailslot.userdb.static", "lookup_static", False),
    "sql": ("mailslot.userdb.sql", "lookup_sql", True),
    "dovecot": ("mailslot.userdb.dovecot", "lookup_dovecot", True),
}


DRIVERS = {}
# Names of the drivers that take the settings as a fifth argument.
_WANTS_SETTINGS = set()


def register_driver(name, function, *, settings=False):
    """Make function the driver name.

    function(name, args, values, warnings) -> dict | None; with settings=True it is
    called as function(name, args, values, warnings, settings).
    """
    DRIVERS[name] = function
    if settings:
        _WANTS_SETTINGS.add(name)
    else:
        _WANTS_SETTINGS.discard(name)


def lookup(name, userdbs, *, values=None, warnings=None, settings=None):
    """Return the User for name from the first userdb that knows it, else None.

    values adds %variables (hostname, ...) to those built from name; warnings, if a
    list, receives the warning strings (they are also on the returned User);
    settings (the engine's settings dict) gives drivers their timeouts and socket
    paths (missing names take their SCHEMA defaults).
    Raises errors.UserdbError when a userdb cannot answer.
    """
    collected = []
    try:
        return _lookup_all(name, userdbs, values, collected, settings or {})
    finally:
        if warnings is not None:
            warnings.extend(collected)


def _lookup_all(name, userdbs, values, collected, settings):
    base = user_values(name, None)
    if values:
        base.update(values)
    for number, block in enumerate(userdbs, 1):
        driver = _check_block(block, number)
        where = f"userdb {block.get('name') or driver}"
        defaults = template_fields(block.get("default_fields", ""), base,
                                   f"{where} default_fields")
        driver_values = dict(base)
        if defaults.get("home"):
            driver_values["home"] = defaults["home"]
        arguments = (name, block.get("args", ""), driver_values, collected)
        if driver in _WANTS_SETTINGS:
            arguments += (settings,)
        answer = DRIVERS[driver](*arguments)
        if answer is None:
            continue
        fields = dict(defaults)
        fields.update(answer)
        fields.update(template_fields(block.get("override_fields", ""), base,
                                      f"{where} override_fields"))
        return _make_user(name, fields, where, collected)
    return None


def normalize_username(name, settings=None):
    """Return the name the userdbs are asked for, made as Dovecot's auth process does.

    In Dovecot's order (auth-request-fields.c, auth_request_fix_username):
    auth_default_realm is appended to a name without '@'; each byte is translated
    by auth_username_translation (pairs "from to"), then must be one of
    auth_username_chars (empty: any byte); then auth_username_format (default
    "%Lu": lower case) is expanded with the name as %u. settings may lack any of
    these names (their SCHEMA defaults apply).

    Raises errors.UserUnknownError for a name Dovecot refuses (a disallowed byte, a
    NUL, an empty result): Dovecot answers such a lookup NOTFOUND, so dovecot-lda
    says "User doesn't exist". Raises errors.ConfigError when auth_username_format
    does not expand.
    """
    settings = settings or {}
    realm = setting(settings, "auth_default_realm")
    if realm and "@" not in name:
        name = f"{name}@{realm}"
    raw = name.encode("utf-8", "surrogateescape")
    pairs = setting(settings, "auth_username_translation").encode("utf-8", "surrogateescape")
    if len(pairs) >= 2:
        pairs = pairs[:len(pairs) // 2 * 2]
        raw = raw.translate(bytes.maketrans(pairs[0::2], pairs[1::2]))
    allowed = setting(settings, "auth_username_chars").encode("utf-8", "surrogateescape")
    for byte in raw:
        # NUL is refused whatever the setting: no C string (nor Dovecot) can carry it.
        if byte == 0 or (allowed and byte not in allowed):
            raise errors.UserUnknownError(
                f"User doesn't exist: {printable(name)} (Username character disallowed "
                f"by auth_username_chars: 0x{byte:02x})")
    name = raw.decode("utf-8", "surrogateescape")
    template = setting(settings, "auth_username_format")
    if template:
        try:
            name = expand(template, user_values(name, None))
        except ValueError as exc:
            raise errors.ConfigError(str(exc), key="auth_username_format") from None
    if not name:
        raise errors.UserUnknownError("User doesn't exist: (Empty username)")
    return name


def _check_block(block, number):
    if not isinstance(block, dict):
        raise errors.UserdbError(f"userdb #{number} is not a block of settings")
    unknown = sorted(set(block) - BLOCK_KEYS)
    if unknown:
        raise errors.UserdbError(
            f"userdb #{number}: unsupported setting(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(BLOCK_KEYS))})")
    driver = block.get("driver")
    if driver not in DRIVERS and driver in LAZY_DRIVERS:
        # Imported on first use, then registered here.
        module, function, wants_settings = LAZY_DRIVERS[driver]
        __import__(module)
        register_driver(driver, getattr(sys.modules[module], function),
                        settings=wants_settings)
    if driver not in DRIVERS:
        raise errors.UserdbError(
            f"userdb #{number}: unknown driver {driver!r} "
            f"(known: {', '.join(sorted(set(DRIVERS) | set(LAZY_DRIVERS)))})")
    for key in ("args", "default_fields", "override_fields"):
        if not isinstance(block.get(key, ""), str):
            raise errors.UserdbError(f"userdb #{number}: {key} must be a string")
    return driver


def _make_user(name, fields, where, collected):
    name = fields.pop("user", "") or name
    uid = _parse_id(fields.pop("uid", ""), "uid")
    gid = _parse_id(fields.pop("gid", ""), "gid")
    home = fields.pop("home", "")
    for what, value in (("uid", uid), ("gid", gid)):
        if value is None:
            raise errors.UserdbError(
                f"{where}: user {name} has no valid {what} "
                f"(give it in the userdb or in default_fields)")
    if home and not home.startswith("/"):
        raise errors.UserdbError(
            f"{where}: user {name}: relative home directory paths are not supported: {home}")
    return User(name, uid, gid, home, fields, collected, source=where)


def _parse_id(text, what):
    """Return the uid/gid that text names (a number or a user/group name), or None."""
    if not text:
        return None
    if text.isascii() and text.isdigit():
        number = int(text)
        return number if number <= MAX_ID else None
    try:
        if what == "uid":
            return pwd.getpwnam(text).pw_uid
        import grp  # lazily: only a gid given by name needs it

        return grp.getgrnam(text).gr_gid
    except (KeyError, ValueError):
        return None


# --- passwd -----------------------------------------------------------------------

def _lookup_passwd(name, args, values, warnings):
    for item in args.split(" "):
        key, eq, _ = item.partition("=")
        if item and key != "blocking":
            warnings.append("userdb passwd: move templates in args to override_fields")
            break
    if not name or "\0" in name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    fields = {"user": entry.pw_name, "uid": str(entry.pw_uid),
              "gid": str(entry.pw_gid), "home": entry.pw_dir}
    # Old-style "args = home=/var/mail/%u": templates applied over the entry.
    for item in args.split(" "):
        key, eq, value = item.partition("=")
        if item and key != "blocking":
            fields[key] = expand_field(value, values, "userdb passwd", key) if eq else ""
    return fields


register_driver("passwd", _lookup_passwd)


# --- passwd-file ------------------------------------------------------------------

def _parse_passwd_file_args(args):
    """Split "[username_format=F] [scheme=S] PATH" into (format, path)."""
    username_format = DEFAULT_USERNAME_FORMAT
    rest = args.strip()
    while True:
        word, _, tail = rest.partition(" ")
        if word.startswith("username_format="):
            username_format = word[len("username_format="):]
        elif word.startswith("scheme="):
            pass  # a passdb argument; shared args lines are common, so tolerate it
        else:
            break
        rest = tail.lstrip(" ")
    if not rest:
        raise errors.UserdbError("userdb passwd-file: missing path in args")
    if not rest.startswith("/"):
        raise errors.UserdbError(f"userdb passwd-file: path must be absolute: {rest}")
    return username_format, rest


def _expand_path(template, values):
    """Expand a per-domain path, or return None when the name cannot be a file there."""
    # As Dovecot's path_fix(): a value never reaches past its own path component.
    fixed = {k: (v.partition("/")[0] if isinstance(v, str) else v) for k, v in values.items()}
    try:
        path = expand(template, fixed)
    except ValueError as exc:
        raise errors.UserdbError(f"userdb passwd-file: cannot expand path: {exc}") from None
    if "\0" in path or any(part in (".", "..") for part in path.split("/")):
        return None
    return path


def _lookup_passwd_file(name, args, values, warnings):
    username_format, template = _parse_passwd_file_args(args)
    try:
        templated = bool(referenced(template))
        path = _expand_path(template, values) if templated else expand(template, {})
    except ValueError as exc:
        raise errors.UserdbError(f"userdb passwd-file: bad path: {exc}") from None
    if path is None:
        warnings.append(f"passwd-file {template}: refusing the path built for user {name}")
        return None
    escaped = {k: (escape(v) if isinstance(v, str) else v) for k, v in values.items()}
    try:
        username = expand(username_format, escaped)
    except ValueError as exc:
        raise errors.UserdbError(
            f"userdb passwd-file: cannot expand username_format: {exc}") from None
    entry = _find_entry(path, username, templated, warnings)
    if entry is None:
        return None
    uid, gid, home, extra = entry
    fields = {}
    if uid:
        fields["uid"] = uid
    if gid:
        fields["gid"] = gid
    if home:
        fields["home"] = home
    field_values = dict(values)
    if home:
        field_values["home"] = home
    for item in extra:
        if not item.startswith("userdb_"):
            continue  # a passdb field
        key, eq, value = item[len("userdb_"):].partition("=")
        where = f"passwd-file {path}: user {username}"
        try:
            fields[key] = expand_field(value, field_values, where, key) if eq else ""
        except errors.UserUnknownError as exc:
            # userdb_mail=maildir:/srv/%d/%n for "user@..": this name is nobody.
            warnings.append(str(exc))
            return None
    return fields


# A long-lived process (mailslot-lmtpd) sets a passwd_cache.PasswdFileCache here:
# each lookup then costs one stat() and files are re-read only when they changed.
# None (the pipe: one lookup per process): the file is read at each lookup.
PASSWD_FILE_CACHE = None


def keep_passwd_files(cache):
    """Set PASSWD_FILE_CACHE (the module's: its name is also a function's)."""
    global PASSWD_FILE_CACHE
    PASSWD_FILE_CACHE = cache

# A line that exists for the passdb only: it hides later duplicates, as in Dovecot.
_PASSDB_ONLY = ("passdb-only",)


def _find_entry(path, username, templated, warnings):
    """Return (uid, gid, home, extra fields) for username in the file, or None."""
    # Names Dovecot's reader could never have stored.
    if not username or username[0] in "#:" or any(c in username for c in ":\n\0"):
        return None
    key = username.encode("utf-8", "surrogateescape")
    cache = PASSWD_FILE_CACHE
    lines = cache.lines_of(path, key) if cache is not None else None
    if lines is None:
        lines = _read_lines_of(path, key, templated, warnings)
        if lines is None:
            return None
    found = None
    for number, line in lines:
        where = f"passwd-file {path} line {number}"
        if found is not None:
            warnings.append(f"{where}: User {username} exists more than once")
            continue
        found = _parse_entry(line.decode("utf-8", "surrogateescape"), where, warnings)
    if found is None or found is _PASSDB_ONLY:
        return None
    return found


def _read_lines_of(path, key, templated, warnings):
    """The (line number, line) pairs of the file for user key, read now; None for a
    per-domain file that does not exist."""
    try:
        stream = open(path, "rb")
    except FileNotFoundError:
        if templated:
            # A per-domain file that does not exist: a domain with no users (Dovecot).
            warnings.append(f"passwd-file {path}: missing passwd file")
            return None
        raise errors.UserdbError(f"passwd-file {path}: file does not exist") from None
    except OSError as exc:
        raise errors.UserdbError(
            f"passwd-file {path}: cannot open: {exc.strerror} "
            f"(running as uid {os.getuid()})") from None
    lines = []
    try:
        with stream:
            for number, raw in enumerate(stream, 1):
                # Cheap filter first: only lines for this user are kept.
                if not raw.startswith(key):
                    continue
                line = raw[:-1] if raw.endswith(b"\n") else raw
                if line.endswith(b"\r"):
                    line = line[:-1]
                if line == key or line.startswith(key + b":"):
                    lines.append((number, line))
    except OSError as exc:
        raise errors.UserdbError(f"passwd-file {path}: read failed: {exc.strerror}") from None
    return lines


def _parse_entry(line, where, warnings):
    """Parse one passwd-file line: (uid, gid, home, extra), _PASSDB_ONLY, or None."""
    parts = line.split(":")
    name, rest = parts[0], parts[2:]
    ids = []
    for index, what in ((0, "uid"), (1, "gid")):
        if len(rest) <= index:
            return _PASSDB_ONLY  # no uid or gid field: "missing userdb info"
        value = rest[index]
        number = _parse_id(value, what) if value else None
        if value and not number:
            # An id that does not parse, or 0: Dovecot drops the line.
            warnings.append(f"{where}: User {name} has invalid {what.upper()} '{value}'")
            return None
        ids.append("" if number is None else str(number))
    uid, gid = ids
    home = rest[3] if len(rest) > 3 else ""
    after_shell = rest[5:]
    extra = ""
    if after_shell and after_shell[0] == "":
        # Old format: an empty field, then the mail location (which may hold ':').
        if len(after_shell) > 1 and after_shell[1]:
            extra = "userdb_mail=" + ":".join(after_shell[1:])
    elif after_shell:
        extra = ":".join(after_shell)
    return uid, gid, home, [item for item in extra.split(" ") if item]


register_driver("passwd-file", _lookup_passwd_file)


def check_passwd_file(path):
    """Return the warnings for every malformed or duplicate line of a passwd-file.

    For `mailslot config` and administrators: lookup() parses only the lines of the
    user it looks for. Raises errors.UserdbError when the file cannot be read.
    """
    warnings, seen = [], set()
    try:
        with open(path, "rb") as stream:
            for number, raw in enumerate(stream, 1):
                line = raw.rstrip(b"\n")
                if line.endswith(b"\r"):
                    line = line[:-1]
                if not line or line[:1] in (b"#", b":"):
                    continue
                text = line.decode("utf-8", "surrogateescape")
                where = f"passwd-file {path} line {number}"
                name = text.partition(":")[0]
                if name in seen:
                    warnings.append(f"{where}: User {name} exists more than once")
                    continue
                if _parse_entry(text, where, warnings) is not None:
                    seen.add(name)
    except OSError as exc:
        raise errors.UserdbError(f"passwd-file {path}: {exc.strerror}") from None
    return warnings

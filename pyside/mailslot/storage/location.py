"""mail_location: Dovecot's "<format>:<root>[:KEY=VALUE]..." setting, parsed.

    maildir:~/Maildir
    maildir:~/Maildir:LAYOUT=fs:CONTROL=~/control:INDEX=MEMORY
    maildir:/var/vmail/example.org/bob:INBOX=/var/vmail/example.org/bob/inbox

As in Dovecot (mailbox_list_settings_parse_full, src/lib-storage/mailbox-list.c):
fields are separated by ':', and '::' stands for a literal ':' inside a path; a
trailing '/' is dropped; '~' and '~/' expand to the user's home. The caller has
already expanded %variables.

Understood: INBOX, CONTROL, INDEX (recorded; mailslot writes no index files),
LAYOUT (maildir++ or fs), SUBSCRIPTIONS (file name), UTF-8 (names stored in UTF-8
instead of modified UTF-7). Accepted and ignored, since they only concern Dovecot's
own index and lock files: INDEXPVT, INDEXCACHE, VOLATILEDIR, LISTINDEX, ITERINDEX,
NO-NOSELECT, NO-FS-VALIDATION (mailslot keeps validating), BROKENCHAR, ALT,
ALTNOCHECK. Refused, because mail would land elsewhere than Dovecot looks: DIRNAME,
FULLDIRNAME, MAILBOXDIR, LAYOUT=index/imapdir, "~otheruser", relative paths.

mbox (Dovecot's mbox storage, src/lib-storage/index/mbox/mbox-storage.c):
    mbox:~/mail:INBOX=/var/mail/%u
the root is a directory of mbox files (LAYOUT=fs, the only layout for mbox); INBOX
defaults to <root>/inbox and the subscriptions file to <root>/.subscriptions, as
Dovecot's mbox_storage_get_list_settings() sets them.

Errors: ConfigError (the engine answers 75: a typo must never bounce mail).

Security: the paths come from the administrator's configuration or the userdb;
they are taken as given (symlinks in them are the administrator's business).
Only what lies beneath them is walked without following symlinks. The location
keeps the home it was parsed for: an mbox INBOX that would be a dot file directly
in it (INBOX=~/.profile, a shell start-up file) is never created
(MailLocation.is_home_dot_file; with the relay's caller_config, -o mail_location
is the caller's to choose).
"""

from ..errors import ConfigError

# Formats Dovecot knows that mailslot does not (yet) write.
KNOWN_FORMATS = ("maildir", "mbox", "sdbox", "dbox", "mdbox", "imapc", "pop3c",
                 "shared", "virtual", "raw", "cydir", "obox")
SUPPORTED_FORMATS = ("maildir", "mbox")
LAYOUTS = ("maildir++", "fs")
DEFAULT_SUBSCRIPTIONS_NAME = "subscriptions"
# Dovecot's MBOX_SUBSCRIPTION_FILE_NAME and the default mbox INBOX below the root.
MBOX_SUBSCRIPTIONS_NAME = ".subscriptions"
MBOX_DEFAULT_INBOX_NAME = "inbox"
IGNORED_KEYS = ("INDEXPVT", "INDEXCACHE", "VOLATILEDIR", "LISTINDEX", "ITERINDEX",
                "NO-NOSELECT", "NO-FS-VALIDATION", "BROKENCHAR", "ALT", "ALTNOCHECK")
REFUSED_KEYS = ("DIRNAME", "FULLDIRNAME", "MAILBOXDIR")
PATH_KEYS = ("INBOX", "CONTROL", "INDEX")


class MailLocation:
    """The parsed setting: absolute paths, or None where not given."""

    __slots__ = ("format", "root", "inbox", "control", "index", "layout",
                 "subscriptions_name", "utf8", "source", "home")

    def __init__(self, format, root, *, inbox=None, control=None, index=None,
                 layout="maildir++", subscriptions_name=DEFAULT_SUBSCRIPTIONS_NAME,
                 utf8=False, source="", home=None):
        self.format, self.root, self.inbox = format, root, inbox
        self.control, self.index, self.layout = control, index, layout
        self.subscriptions_name, self.utf8, self.source = subscriptions_name, utf8, source
        self.home = home

    def is_home_dot_file(self, path):
        """True if path is a dot file directly in the user's home (~/.profile,
        ~/.bashrc, ~/.forward ...): a file the user's shell or mail system reads,
        which mail storage must never create (issue 12.7)."""
        if not self.home:
            return False
        head, _, name = _normalized(path).rpartition("/")
        return name.startswith(".") and (head or "/") == _normalized(self.home)

    def __repr__(self):
        return f"MailLocation({self.source!r})"


def _normalized(path):
    """path with "//", "/./" and "x/.." folded (textually, as the kernel would if no
    component were a symlink), without a trailing '/'."""
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def _split_fields(data):
    """Split on ':' with '::' as a literal ':' (Dovecot's split_next_arg)."""
    parts = data.split(":")
    fields = []
    i = 0
    while i < len(parts):
        field = parts[i]
        i += 1
        while i < len(parts) and parts[i] == "":
            i += 1
            if i >= len(parts):
                break                       # a trailing ':' is ignored
            field += ":" + parts[i]
            i += 1
        fields.append(field)
    return fields


def _fix_path(path, home, what, source):
    if "\0" in path:
        raise ConfigError(f"{what} contains a NUL byte in: {source}", key="mail_location")
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    if path == "~" or path.startswith("~/"):
        if not home or not home.startswith("/"):
            raise ConfigError(f"home directory not set (or not absolute), can't expand ~ "
                              f"for {what} in: {source}", key="mail_location")
        path = home.rstrip("/") + path[1:]
    elif path.startswith("~"):
        raise ConfigError(f"~otheruser is not supported for {what} in: {source}",
                          key="mail_location")
    if not path.startswith("/"):
        raise ConfigError(f"{what} must be an absolute path in: {source}", key="mail_location")
    return path


def parse_mail_location(value, *, home):
    """Parse a mail_location value; return MailLocation or raise ConfigError."""
    if not isinstance(value, str) or value.strip() == "":
        raise ConfigError("mail_location is empty (e.g. maildir:~/Maildir)", key="mail_location")
    fmt, sep, rest = value.partition(":")
    if not sep:
        raise ConfigError(f"mail_location needs a format, as in maildir:{value}",
                          key="mail_location")
    if fmt not in SUPPORTED_FORMATS:
        if fmt in KNOWN_FORMATS:
            raise ConfigError(f"the {fmt} format is not supported by mailslot "
                              f"(only maildir and mbox)", key="mail_location")
        raise ConfigError(f"unknown mail storage format {fmt!r}", key="mail_location")
    fields = _split_fields(rest)
    if not fields or fields[0] == "":
        raise ConfigError(f"mail root directory not given in: {value}", key="mail_location")
    if fields[0].startswith("INBOX="):
        raise ConfigError(f"mail root directory not given in: {value}", key="mail_location")
    loc = MailLocation(fmt, _fix_path(fields[0], home, "mail root", value), source=value,
                       home=home)
    if fmt == "mbox":
        loc.layout = "fs"
        loc.subscriptions_name = MBOX_SUBSCRIPTIONS_NAME
    for field in fields[1:]:
        if field == "UTF-8":
            loc.utf8 = True
            continue
        key, _, val = field.partition("=")
        if key in PATH_KEYS:
            if key == "INDEX" and val == "MEMORY":
                loc.index = "MEMORY"
                continue
            if val == "":
                raise ConfigError(f"{key} has no value in: {value}", key="mail_location")
            path = _fix_path(val, home, key, value)
            setattr(loc, key.lower(), path)
        elif key == "LAYOUT":
            layout = val.lower()
            if layout not in LAYOUTS:
                raise ConfigError(f"LAYOUT={val} is not supported (maildir++ or fs) in: {value}",
                                  key="mail_location")
            if fmt == "mbox" and layout != "fs":
                raise ConfigError(f"LAYOUT={val} is not supported for mbox (only fs) in: {value}",
                                  key="mail_location")
            loc.layout = layout
        elif key == "SUBSCRIPTIONS":
            if val in ("", ".", "..") or "/" in val or "\0" in val:
                raise ConfigError(f"SUBSCRIPTIONS must be a plain file name in: {value}",
                                  key="mail_location")
            loc.subscriptions_name = val
        elif key in IGNORED_KEYS:
            continue
        elif key in REFUSED_KEYS:
            raise ConfigError(f"{key} is not supported by mailslot in: {value}",
                              key="mail_location")
        else:
            raise ConfigError(f"unknown setting {key!r} in: {value}", key="mail_location")
    if fmt == "mbox" and loc.inbox is None:
        loc.inbox = loc.root + "/" + MBOX_DEFAULT_INBOX_NAME
    return loc

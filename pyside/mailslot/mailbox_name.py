"""Mailbox names: from what a user or a Sieve script writes to validated components.

A mailbox name such as "INBOX/box/sub" (namespace prefix "INBOX/", separator "/") is
split into its components ("box", "sub"), which the storage then encodes for the
disk. Every name that reaches a storage goes through split_mailbox_name() (names from
the command line, from the recipient's address extension, from Sieve fileinto) and
the storage checks the components again with check_components() before it touches a
directory, so a tuple built elsewhere gets the same checks.

Also here: modified UTF-7 (RFC 3501 section 5.1.3), the encoding Dovecot uses for
mailbox names on disk (".T&AOk-st" for "Tést").

Errors: MailboxNameError (a StorageError, so temporary) names the rule that refused.

Security: a mailbox name may come from a sender (the "+detail" of an address, a
Sieve script). Nothing that could leave the mail root survives: empty components,
"." and "..", "/" inside a component, control characters, invalid UTF-8 (the
surrogate escapes Python uses for undecodable bytes of argv), a leading "~", names
too long for the filesystem. The storage additionally walks directories with
O_NOFOLLOW, so even a valid name cannot follow a planted symlink.
"""

from .errors import MailboxNameError

# Dovecot's MAILBOX_LIST_NAME_MAX_LENGTH (PATH_MAX, src/lib-storage/mailbox-list.h):
# the longest whole name, in UTF-8 bytes.
MAILBOX_NAME_MAX_BYTES = 4096
# Dovecot's MAILBOX_MAX_HIERARCHY_NAME_LENGTH (src/lib-storage/mail-storage.c): the
# longest single component; also NAME_MAX of the usual Linux filesystems.
COMPONENT_MAX_BYTES = 255
# mailslot's own bound on nesting (RFC 3501 sets none): deeper hierarchies are
# mistakes or attacks, and each level costs a directory walk.
MAX_HIERARCHY_DEPTH = 64

INBOX = "INBOX"


def _first_bad_char(s):
    """Return a description of the first character s must not contain, or None."""
    for ch in s:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            # Python decodes undecodable argv bytes to lone surrogates
            # (surrogateescape); they are not characters, the bytes were not UTF-8.
            return "invalid UTF-8"
        if code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F:
            return f"control character U+{code:04X}"
    return None


def _check_component(part, *, separator):
    if part == "":
        raise MailboxNameError("mailbox name has an empty component")
    if part in (".", ".."):
        raise MailboxNameError(f"mailbox name component {part!r} is not allowed")
    if "/" in part:
        raise MailboxNameError("mailbox name component contains '/'")
    if separator is not None and separator in part:
        raise MailboxNameError(f"mailbox name component contains the separator {separator!r}")
    bad = _first_bad_char(part)
    if bad is not None:
        raise MailboxNameError(f"mailbox name contains {bad}")
    if len(part.encode("utf-8")) > COMPONENT_MAX_BYTES:
        raise MailboxNameError(
            f"mailbox name component is longer than {COMPONENT_MAX_BYTES} bytes")


def check_components(name):
    """Check a tuple of mailbox components; return it as a tuple.

    ("INBOX",) is the inbox; "inbox" in any case as the first component is
    normalised to "INBOX" as IMAP requires (RFC 3501 section 5.1).
    Raises MailboxNameError for anything split_mailbox_name() would refuse.
    """
    if isinstance(name, str) or not name:
        raise MailboxNameError("mailbox name must be a non-empty tuple of components")
    if len(name) > MAX_HIERARCHY_DEPTH:
        raise MailboxNameError(f"mailbox name is deeper than {MAX_HIERARCHY_DEPTH} levels")
    total = 0
    for part in name:
        if not isinstance(part, str):
            raise MailboxNameError("mailbox name component is not a string")
        _check_component(part, separator=None)
        total += len(part.encode("utf-8")) + 1
    if total - 1 > MAILBOX_NAME_MAX_BYTES:
        raise MailboxNameError(f"mailbox name is longer than {MAILBOX_NAME_MAX_BYTES} bytes")
    first = name[0]
    if first.upper() == INBOX:
        first = INBOX
    elif first.startswith("~"):
        # Dovecot refuses it too (mailbox_list_is_valid_fs_name): "~" means a home.
        raise MailboxNameError("mailbox name must not begin with '~'")
    return (first,) + tuple(name[1:])


def _strip_prefix(name, prefix):
    """Return name without the namespace prefix, or None if it is not under it."""
    head = name[:len(prefix)]
    if head == prefix:
        return name[len(prefix):]
    # The INBOX part of a prefix such as "INBOX/" is case-insensitive, as Dovecot
    # accepts "inbox/x" for "INBOX/x".
    if prefix[:5].upper() == INBOX and head.upper() == prefix.upper():
        return name[len(prefix):]
    return None


def split_mailbox_name(name, *, prefix, separator):
    """Split a namespace name into validated components.

    "INBOX/box/sub" with prefix "INBOX/" and separator "/" -> ("box", "sub");
    "INBOX" in any case -> ("INBOX",); prefix "" and separator "." "a.b" -> ("a", "b").
    A name outside the prefix is refused (Dovecot finds no namespace for it).
    Raises MailboxNameError; a bad separator or prefix is a ConfigError.
    """
    if not isinstance(separator, str) or len(separator) != 1:
        from .errors import ConfigError
        raise ConfigError(f"namespace separator must be one character, not {separator!r}")
    if prefix and not prefix.endswith(separator):
        from .errors import ConfigError
        raise ConfigError(f"namespace prefix {prefix!r} must end with the separator {separator!r}")
    if not isinstance(name, str) or name == "":
        raise MailboxNameError("mailbox name is empty")
    bad = _first_bad_char(name)
    if bad is not None:
        raise MailboxNameError(f"mailbox name contains {bad}")
    if len(name.encode("utf-8")) > MAILBOX_NAME_MAX_BYTES:
        raise MailboxNameError(f"mailbox name is longer than {MAILBOX_NAME_MAX_BYTES} bytes")
    if name.upper() == INBOX:
        return (INBOX,)
    if prefix:
        rest = _strip_prefix(name, prefix)
        if rest is None:
            raise MailboxNameError(
                f"mailbox name is outside the namespace prefix {prefix!r}")
        if rest == "":
            raise MailboxNameError("mailbox name is empty after the namespace prefix")
        name = rest
    parts = name.split(separator)
    if len(parts) > MAX_HIERARCHY_DEPTH:
        raise MailboxNameError(f"mailbox name is deeper than {MAX_HIERARCHY_DEPTH} levels")
    for part in parts:
        _check_component(part, separator=separator)
    return check_components(tuple(parts))


# --- modified UTF-7, RFC 3501 section 5.1.3 -----------------------------------------

def _b64_encode(text):
    from binascii import b2a_base64
    raw = text.encode("utf-16-be")
    return b2a_base64(raw, newline=False).decode("ascii").rstrip("=").replace("/", ",")


def encode_mutf7(s):
    """Encode a Unicode mailbox name (or component) in modified UTF-7."""
    out = []
    run = []
    for ch in s:
        code = ord(ch)
        if 0x20 <= code <= 0x7E:
            if run:
                out.append("&" + _b64_encode("".join(run)) + "-")
                run = []
            out.append("&-" if ch == "&" else ch)
        else:
            if 0xD800 <= code <= 0xDFFF:
                raise MailboxNameError("mailbox name contains invalid UTF-8")
            run.append(ch)
    if run:
        out.append("&" + _b64_encode("".join(run)) + "-")
    return "".join(out)


def decode_mutf7(s):
    """Decode modified UTF-7; raise MailboxNameError for anything RFC 3501 forbids."""
    from binascii import a2b_base64, Error as BinasciiError
    out = []
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if not 0x20 <= ord(ch) <= 0x7E:
            raise MailboxNameError("modified UTF-7 contains a non-printable character")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = s.find("-", i + 1)
        if end < 0:
            raise MailboxNameError("modified UTF-7 shift is not terminated")
        chunk = s[i + 1:end]
        i = end + 1
        if chunk == "":
            out.append("&")
            continue
        if any(c not in _B64_CHARS for c in chunk) or len(chunk) % 4 == 1:
            raise MailboxNameError("modified UTF-7 contains invalid base64")
        try:
            raw = a2b_base64((chunk.replace(",", "/") + "=" * (-len(chunk) % 4)).encode())
            text = raw.decode("utf-16-be")
        except (BinasciiError, UnicodeDecodeError):
            raise MailboxNameError("modified UTF-7 contains invalid UTF-16") from None
        if len(raw) % 2 or any(0x20 <= ord(c) <= 0x7E for c in text):
            # Printable ASCII must be written as itself (RFC 3501 5.1.3), so
            # a shifted form of it is a second spelling of the same name.
            raise MailboxNameError("modified UTF-7 encodes printable ASCII")
        if encode_mutf7(text) != "&" + chunk + "-":
            raise MailboxNameError("modified UTF-7 is not in its canonical form")
        out.append(text)
    return "".join(out)


_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")

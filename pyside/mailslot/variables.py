"""Dovecot's %-variables: expand a settings template such as "maildir:/var/mail/%d/%n".

The syntax is Dovecot 2.3's (lib/var-expand.c, doc wiki "Variables"):

    %%                  a literal '%'
    %u %n %d %h ...     a one-letter variable; the letter names a long variable
                        through a short-key table (SETTINGS_KEYS by default)
    %{user} %{home}     a long variable: any key of the values dict, or a built-in
    %{env:NAME}         an environment variable ("" when unset)
    %{userdb:NAME[:DEFAULT]}  the userdb field NAME (values["userdb:NAME"]), else DEFAULT
    %[-][0]W[.[0][-]W2][MODIFIERS]VAR
                        substring and padding: %1n is the first letter of the user
                        name, %-2.2i the last two characters of the uid, %04i pads
                        with zeros, %0.-2u drops the last two characters
    modifiers           L lower, U upper (ASCII only, as Dovecot), E escape ' " \\,
                        X decimal to hex, R reverse, T trim trailing white space,
                        D "a.b" -> "a,dc=b", M MD5 hex, N and H 32-bit hashes
                        (%2.256Nu gives 00..ff)

Built-in long variables, as in Dovecot: pid, uid and gid (of this process), hostname.

Errors: expand() raises ValueError with a message meant for an administrator when a
template is malformed (a trailing lone '%', an unclosed '%{'), names a variable that
has no value (unknown name, %h for a user without a home directory), or uses a
Dovecot feature mailslot does not implement (%{if;...}, %{sha256:...}). The caller
adds the file, line and key. With strict=False unknown variables expand to "".

Differences from Dovecot, on purpose: a trailing '%' is an error (Dovecot drops it
silently); offsets and widths count characters, not UTF-8 bytes; %R reverses
characters, not bytes.

Security: expansion never reads files and never runs anything; %{env:...} reads only
this process's environment (which the relay has cleaned). expand() inserts values as
they are. Values taken from a recipient (RECIPIENT_KEYS: %u %n %d and their auth_
forms) are a sender's data: where a template builds a path or a mail location,
expand_path() refuses (UnsafeValueError) one that holds '/', NUL or '%', or whose
path component comes out empty, "." or ".." (so "..@ex.org" never names the domain
directory and "x%h" is never expanded a second time), and doubles a ':' in a mail
location so that it cannot start a ":KEY=" option (Dovecot reads "::" as one ':');
quote_percent=... makes expand() write '%' in them as "%%" for a template whose
result is expanded again.
"""

import os

# One-letter variables in settings (Dovecot's mail_user_var_expand_table).
SETTINGS_KEYS = {
    "u": "user",
    "n": "username",
    "d": "domain",
    "s": "service",
    "h": "home",
    "l": "lip",
    "r": "rip",
    "p": "pid",
    "i": "uid",
}

# Dovecot's limit on modifiers per variable (MAX_MODIFIER_COUNT in var-expand.c).
MAX_MODIFIERS = 10

# ASCII-only case mapping: Dovecot's t_str_lcase/t_str_ucase leave non-ASCII alone,
# and a mail directory must be spelled exactly as Dovecot spells it.
_ASCII_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ASCII_LOWER = "abcdefghijklmnopqrstuvwxyz"
_TO_LOWER = str.maketrans(_ASCII_UPPER, _ASCII_LOWER)
_TO_UPPER = str.maketrans(_ASCII_LOWER, _ASCII_UPPER)

_NO_HOME = object()

# Values that come from the recipient address (user_values()): a sender's data.
RECIPIENT_KEYS = frozenset(("user", "username", "domain", "auth_user", "auth_username",
                            "auth_domain"))
# Path components a recipient's value may not make (nor may it hold these).
_UNSAFE_COMPONENTS = ("", ".", "..")
_UNSAFE_CHARS = ("/", "\0", "%")


class UnsafeValueError(ValueError):
    """A recipient's value cannot be used where a template puts it (a path)."""


class _Field:
    """The per-variable state that the substring and hash modifiers share."""

    __slots__ = ("offset", "width", "zero_padding")

    def __init__(self, offset, width, zero_padding):
        self.offset, self.width, self.zero_padding = offset, width, zero_padding


def _md5(text):
    import hashlib  # lazily: only %M and %N need it

    return hashlib.md5(text.encode("utf-8", "surrogateescape")).digest()


def _old_hash(text):
    """Dovecot's str_hash() (the ASU hash from glib), for the %H modifier."""
    h = 0
    for byte in text.encode("utf-8", "surrogateescape"):
        h = ((h << 4) + byte) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
            h ^= g
    return h


def _format_hash(value, field):
    # The hash modifiers borrow the field's width as a modulus and its offset as
    # the zero-padded length, then clear both (m_str_hash in var-expand.c).
    if field.width > 0:
        value %= field.width
        field.width = 0
    text = "%x" % (value & 0xFFFFFFFF)
    if len(text) < field.offset:
        text = "0" * (field.offset - len(text)) + text
    field.offset = 0
    return text


def _hex(text, field):
    # Not a base-10 number that fits 64 bits: 0, as str_to_ullong() failing does.
    number = int(text) if text.isascii() and text.isdigit() else 0
    return "%x" % (number if number < 1 << 64 else 0)


def _escape(text, field):
    return escape(text)


def _trim(text, field):
    return text.rstrip(" \t\n\v\f\r")


def _new_hash(text, field):
    return _format_hash(int.from_bytes(_md5(text)[:8], "big"), field)


_MODIFIERS = {
    "L": lambda text, field: text.translate(_TO_LOWER),
    "U": lambda text, field: text.translate(_TO_UPPER),
    "E": _escape,
    "X": _hex,
    "R": lambda text, field: text[::-1],
    "H": lambda text, field: _format_hash(_old_hash(text), field),
    "N": _new_hash,
    "M": lambda text, field: _md5(text).hex(),
    "D": lambda text, field: text.replace(".", ",dc="),
    "T": _trim,
}


def escape(text):
    """Put a backslash before '"', "'" and '\\' (Dovecot's str_escape, the %E modifier)."""
    if '"' not in text and "'" not in text and "\\" not in text:
        return text
    return "".join("\\" + c if c in "\"'\\" else c for c in text)


def user_values(user, home, *, service="lda"):
    """Return the values dict for a user: user, username, domain, home, service, ...

    user is the full name (may be user@domain); username is the part before the
    first '@', domain the part after it ("" without one). home None or "" means the
    user has none: %h then raises ValueError. lip, rip and session are known but
    empty here, as in Dovecot's LDA.
    """
    username, at, domain = user.partition("@")
    values = {
        "user": user,
        "username": username,
        "domain": domain,
        "service": service,
        "lip": "",
        "rip": "",
        "local_ip": "",
        "remote_ip": "",
        "session": "",
        "auth_user": user,
        "auth_username": username,
        "auth_domain": domain,
    }
    if home:
        values["home"] = home
    return values


def _parse(template, short_keys):
    """Yield the template's parts: str for literal text, tuples for variables.

    A variable is (key, shown, offset, width, zero_padding, modifiers): key is the
    long name (None for an unknown one-letter variable), shown the variable as
    written. Raises ValueError for a malformed template.
    """
    literal = []
    i, end = 0, len(template)
    while i < end:
        c = template[i]
        if c != "%":
            literal.append(c)
            i += 1
            continue
        start = i
        i += 1
        # [<offset>.]<width>[<modifiers>]<variable>, parsed as var-expand.c does.
        sign, offset, width, zero_padding = 1, 0, 0, False
        if i < end and template[i] == "-":
            sign = -1
            i += 1
        if i < end and template[i] == "0":
            zero_padding = True
            i += 1
        while i < end and template[i].isascii() and template[i].isdigit():
            width = width * 10 + int(template[i])
            i += 1
        if i < end and template[i] == ".":
            offset, sign, width, zero_padding = sign * width, 1, 0, False
            i += 1
            if i < end and template[i] == "0":
                zero_padding = True
                i += 1
            if i < end and template[i] == "-":
                sign = -1
                i += 1
            while i < end and template[i].isascii() and template[i].isdigit():
                width = width * 10 + int(template[i])
                i += 1
            width *= sign
        modifiers = []
        while i < end and template[i] in _MODIFIERS and len(modifiers) < MAX_MODIFIERS:
            modifiers.append(template[i])
            i += 1
        if i >= end:
            raise ValueError(
                f"lone '%' at the end of {template!r} (write %% for a literal '%')"
            )
        c = template[i]
        if c == "{":
            close = _matching_brace(template, i)
            if close < 0:
                raise ValueError(f"unclosed '%{{' at position {start} in {template!r}")
            key, is_long = template[i + 1:close], True
            i = close + 1
        else:
            key, is_long = c, False
            i += 1
        if not is_long and key == "%":
            literal.append("%")  # also %L% and %2%: the key '%' is always literal
            continue
        if literal:
            yield "".join(literal)
            literal = []
        shown = "%{" + key + "}" if is_long else "%" + key
        if not is_long:
            key = short_keys.get(key)  # None: an unknown one-letter variable
        yield (key, shown, offset, width, zero_padding, modifiers)
    if literal:
        yield "".join(literal)


def _matching_brace(template, i):
    """Return the index of the '}' closing the '{' at i, or -1 (nesting, '\\' escapes)."""
    depth, escaped = 0, False
    for j in range(i, len(template)):
        c = template[j]
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _lookup(key, values):
    """Return the value of long variable key, _NO_HOME, or None when it is unknown."""
    value = values.get(key)
    if value is not None:
        return str(value)
    if key == "home":
        return _NO_HOME
    if key == "pid":
        return str(os.getpid())
    if key == "uid":
        return str(os.geteuid())
    if key == "gid":
        return str(os.getegid())
    if key == "hostname":
        return os.uname().nodename
    func, colon, data = key.partition(":")
    if not colon:
        return None
    if func == "env":
        return os.environ.get(data, "")
    if func == "userdb":
        name, colon, default = data.partition(":")
        value = values.get("userdb:" + name)
        return default if value is None else str(value)
    return None


def _apply(value, offset, width, zero_padding, modifiers):
    field = _Field(offset, width, zero_padding)
    for m in modifiers:
        value = _MODIFIERS[m](value, field)
    # The substring is always taken from the final string (var-expand.c).
    if field.offset:
        value = value[field.offset:]  # negative: from the end, as Dovecot
    if field.width == 0:
        return value
    if field.zero_padding:
        return value.rjust(field.width, "0") if field.width > 0 else value
    if field.width < 0:
        return value[: max(0, len(value) + field.width)]
    return value[: field.width]


def expand(template, values, *, short_keys=SETTINGS_KEYS, strict=True, quote_percent=()):
    """Return template with its %-variables replaced from values.

    values maps long names ("user", "home", ...) to strings; short_keys maps the
    one-letter forms to long names. Raises ValueError (see the module docstring);
    with strict=False an unknown variable or a missing home expands to "" instead
    (a malformed template still raises). The values of the keys in quote_percent
    have '%' written as "%%", for a result that will be expanded once more.
    """
    if "%" not in template:
        return template
    out = []
    for part in _parse(template, short_keys):
        if isinstance(part, str):
            out.append(part)
            continue
        text = _expand_variable(part, values, template, strict)
        if part[0] in quote_percent:
            text = text.replace("%", "%%")
        out.append(text)
    return "".join(out)


def expand_path(template, values, *, location=False, separators="/", refuse="",
                short_keys=SETTINGS_KEYS):
    """expand() for a template that names a place on disk (location=True: a
    mail_location, whose ':' also separates fields).

    A recipient's value (RECIPIENT_KEYS) holding '/', NUL or '%', or whose path
    component (between separators, or ':' in a location) comes out empty, "." or
    "..", raises UnsafeValueError, as does one holding a character of refuse (";"
    for a Sieve location's options); in a location its ':' is doubled, so it stays
    inside its path."""
    if "%" not in template:
        return template
    if location:
        separators += ":"
    out, spans, size = [], [], 0
    for part in _parse(template, short_keys):
        if isinstance(part, str):
            text = part
        else:
            text = _expand_variable(part, values, template, True)
            if part[0] in RECIPIENT_KEYS:
                bad = next((c for c in _UNSAFE_CHARS + tuple(refuse) if c in text), None)
                if bad is not None:
                    raise UnsafeValueError(
                        f"{part[1]} holds {bad!r}, which a path built by {template!r} "
                        f"cannot carry")
                if location:
                    text = text.replace(":", "::")
                spans.append((size, size + len(text), part[1]))
        out.append(text)
        size += len(text)
    result = "".join(out)
    for start, end, shown in spans:
        while start > 0 and result[start - 1] not in separators:
            start -= 1
        while end < len(result) and result[end] not in separators:
            end += 1
        if result[start:end] in _UNSAFE_COMPONENTS:
            raise UnsafeValueError(
                f"{shown} makes the path component {result[start:end]!r} in {template!r}")
    return result


def _expand_variable(part, values, template, strict):
    key, shown, offset, width, zero_padding, modifiers = part
    value = None if key is None else _lookup(key, values)
    if value is _NO_HOME:
        if strict:
            raise ValueError(
                f"the user has no home directory, but {template!r} uses it (%h)"
            )
        value = ""
    elif value is None:
        if strict:
            hint = ""
            if key and (key.startswith("if;") or ";" in key.partition(":")[0]):
                hint = " (Dovecot's conditionals and hash functions are not supported)"
            raise ValueError(f"unknown variable '{shown}' in {template!r}{hint}")
        value = ""
    return _apply(value, offset, width, zero_padding, modifiers)


def referenced(template, *, short_keys=SETTINGS_KEYS):
    """Return the set of long variable names template uses ("home" for %h, ...).

    Raises ValueError for a malformed template or an unknown one-letter variable.
    """
    if "%" not in template:
        return set()
    names = set()
    for part in _parse(template, short_keys):
        if not isinstance(part, str):
            if part[0] is None:
                raise ValueError(f"unknown variable '{part[1]}' in {template!r}")
            names.add(part[0])
    return names

"""What the userdb drivers share: the User they describe and the helpers they use.

User (one recipient: name, uid, gid, home and the other userdb fields, kept whole so
later features -- quota_rule, sieve, ... -- find them), setting() (a setting or its
SCHEMA default), printable() (a name made safe for a log line) and template_fields()
("key=value ..." templates, %-expanded). lookup.py walks the userdb blocks; the drivers
(static, sql, dovecot) import only this module, so no driver imports the walker that
imports it.

Errors: template_fields raises errors.UserdbError naming where a value does not expand,
errors.UserUnknownError where a recipient's value cannot be the path component a
field puts it in (issue 20.4; expand_field).

Security: printable() bounds and escapes text that comes from a sender before a log
line or error message carries it.
"""

from mailslot import errors
from mailslot.user import User  # noqa: F401 (handed on: the drivers build Users)
from mailslot.variables import RECIPIENT_KEYS, UnsafeValueError, expand, expand_path




def setting(settings, name):
    """settings[name], or its default from config.SCHEMA when the dict lacks it."""
    if name in settings:
        return settings[name]
    from mailslot.config import SCHEMA
    return SCHEMA[name][1]


# How much of a refused name an error message shows (Dovecot's str_sanitize(.., 128)).
SHOWN_NAME_MAX = 128


def printable(text):
    """text cut to SHOWN_NAME_MAX with control characters shown as \\xNN, for logs."""
    out = "".join(c if " " <= c != "\x7f" else f"\\x{ord(c):02x}"
                  for c in text[:SHOWN_NAME_MAX])
    return out + "..." if len(text) > SHOWN_NAME_MAX else out


def template_fields(template, values, where):
    """Parse "key=value key2=value2" (split on spaces), expanding each value.

    A key without '=' gets "". Raises errors.UserdbError naming where when a value
    does not expand, errors.UserUnknownError when a recipient's value cannot be
    part of the path a field builds (see expand_field).
    """
    fields = {}
    for item in template.split(" "):
        if not item:
            continue
        key, eq, value = item.partition("=")
        fields[key] = expand_field(value, values, where, key) if eq else ""
    return fields


def expand_field(value, values, where, key):
    """Expand a userdb field's value for the user (values from user_values()).

    home, mail and the settings that name files take a recipient's value only as a
    safe path component (variables.expand_path: "..@ex.org", "ex.org@.", a '/', a
    '%' are refused with errors.UserUnknownError, and a ':' in mail stays inside its
    path); the other settings that are expanded again later get a recipient's '%'
    as "%%", so that nothing from the name is ever expanded twice."""
    from mailslot.config import PATH_TEMPLATES, USER_TEMPLATES
    try:
        if key in ("mail", "mail_location"):
            return expand_path(value, values, location=True)
        if key == "home":
            return expand_path(value, values)
        if key in PATH_TEMPLATES:
            return expand_path(value, values, separators="/;:", refuse=";")
        if key in USER_TEMPLATES:
            return expand(value, values, quote_percent=RECIPIENT_KEYS)
        return expand(value, values)
    except UnsafeValueError as exc:
        raise errors.UserUnknownError(
            f"{where}: refusing the {key} built for user "
            f"{printable(values.get('user', ''))}: {exc}") from None
    except ValueError as exc:
        raise errors.UserdbError(f"{where}: cannot expand field {key}: {exc}") from None

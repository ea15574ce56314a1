"""The static userdb: one uid, gid and home template for every user (one vmail uid).

    userdb:
      - driver: static
        args: uid=vmail gid=vmail home=/var/vmail/%d/%n allow_all_users=yes

args is Dovecot's static userdb template (userdb-static.c): fields separated by
spaces, each "key=value" (a key alone means ""): uid and gid (numbers or names),
home, mail, quota_rule, sieve, any setting override. Values are %-expanded for each
user, as default_fields are.

allow_all_users: Dovecot's static userdb asks the passdb whether a user exists
unless allow_all_users=yes (a key alone, or "yes" in any case). mailslot has no
passdb, so a static block without allow_all_users=yes cannot say whether anyone
exists: that is a temporary failure (errors.UserdbError, 75), as Dovecot's
"passdb doesn't support lookups, can't verify user's existence" is. With it, the
block answers for every name: put it after the userdbs that know real users, and
let the MTA decide which recipients exist.

Errors: a value that does not expand, a uid or gid name that does not exist (from
userdb.lookup), a missing allow_all_users=yes: errors.UserdbError.

Security: the recipient name is the sender's. A recipient's value in home, mail or
a file-naming setting must make a whole, safe path component (userdb.expand_field,
variables.expand_path): empty, ".", "..", or holding '/', '%' or NUL is refused
(bob@.. or ..@ex.org with home=/var/vmail/%d/%n, or "bob" without a domain there):
the name is an unknown user here. A ':' stays inside mail's path ("::").
"""

from mailslot import errors
from mailslot.userdb.common import template_fields


def lookup_static(name, args, values, warnings):
    """Return the template's fields for name, or None when the name is refused."""
    template, allow_all_users = _split_args(args)
    if not allow_all_users:
        raise errors.UserdbError(
            "userdb static: cannot verify that a user exists without a passdb "
            "(mailslot has none): add allow_all_users=yes to args if every name the "
            "MTA hands over is a user, and put this userdb last")
    try:
        return template_fields(template, values, "userdb static args")
    except errors.UserUnknownError as exc:
        warnings.append(str(exc))
        return None


def _split_args(args):
    """Return (template without allow_all_users, allow_all_users as a bool)."""
    kept, allow = [], False
    for item in args.split(" "):
        key, eq, value = item.partition("=")
        if key == "allow_all_users":
            allow = not eq or value.lower() == "yes"
        elif item:
            kept.append(item)
    return " ".join(kept), allow

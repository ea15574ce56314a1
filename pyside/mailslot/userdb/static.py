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

Security: the recipient name is the sender's. As for per-domain passwd-files, each
%value used in a field is cut at its first '/', and a home or mail location whose
expansion has a "." or ".." path component that the template itself does not have
(bob@.. with home=/var/vmail/%d/%n) is refused: the name is an unknown user here.
"""

from mailslot import errors
from mailslot.userdb.common import template_fields

# The fields that name a place on disk (checked for "." and ".." components).
PATH_FIELDS = ("home", "mail")


def lookup_static(name, args, values, warnings):
    """Return the template's fields for name, or None when the name is refused."""
    template, allow_all_users = _split_args(args)
    if not allow_all_users:
        raise errors.UserdbError(
            "userdb static: cannot verify that a user exists without a passdb "
            "(mailslot has none): add allow_all_users=yes to args if every name the "
            "MTA hands over is a user, and put this userdb last")
    # As Dovecot's path_fix(): a value never reaches past its own path component.
    fixed = {k: (v.partition("/")[0] if isinstance(v, str) else v)
             for k, v in values.items()}
    fields = template_fields(template, fixed, "userdb static args")
    for key in PATH_FIELDS:
        if key in fields and _dot_components(fields[key]) > _dot_components(
                _literal_part(template, key)):
            warnings.append(f"userdb static: refusing the {key} built for user {name}")
            return None
    return fields


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


def _literal_part(template, key):
    """The template text of field key (its value before expansion), or ""."""
    for item in template.split(" "):
        name, _, value = item.partition("=")
        if name == key:
            return value
    return ""


def _dot_components(path):
    """How many "." and ".." components a path (or a mail location) has."""
    return sum(part in (".", "..") for part in path.replace(":", "/").split("/"))


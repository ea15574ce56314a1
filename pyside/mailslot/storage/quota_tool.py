"""`mailslot quota get|recalc -u USER`: a user's quota as `doveadm quota` shows it.

    mailslot quota get [-c FILE] [-f tab|table] -u USER
    mailslot quota recalc [-c FILE] -u USER

get prints Dovecot's columns (Quota name, Type, Value, Limit, %): STORAGE in
kilobytes rounded up, MESSAGE as a count, "-" for no limit, the percentage of
the limit; with -f tab tab-separated with a header line, as `doveadm -f tab quota
get`, else as doveadm's table. Reading the usage refreshes maildirsize when
Dovecot would (a missing or stale file is recalculated). recalc counts the
mailboxes and rewrites maildirsize now.

The user is resolved as a delivery resolves it (recipient.resolve: the userdb's
fields, so a userdb_quota_rule counts). Run as root, the command becomes the
user (groups, gid, uid, verified) before it touches the mail, so that a file it
writes is the user's; run as anyone else, USER must be the caller.

Errors: 64 usage, 67 unknown user, 75 for a settings error, a userdb that cannot
answer or a mailbox that cannot be read; a user without quota settings is an
error (75): there is nothing to report.

Security: as root, nothing below the user's home is opened before the drop;
the drop is checked with getresuid/getresgid and by setuid(0) failing.
"""

import os
import sys

from ..errors import EX_USAGE, ConfigError, PrivilegeError

USAGE = ("usage: mailslot quota get [-c FILE] [-f tab|table] -u USER\n"
         "       mailslot quota recalc [-c FILE] -u USER")
HEADERS = ("Quota name", "Type", "Value", "Limit", "%")
# doveadm's table: values right-aligned in Value, Limit and %; the last column
# takes half of what is left of 80 columns.
TABLE_COLUMNS = 80
RIGHT_ALIGNED = (False, False, True, True, True)


def main(args):
    if not args or args[0] not in ("get", "recalc"):
        print(USAGE, file=sys.stderr)
        return EX_USAGE
    command, rest = args[0], args[1:]
    config = user = None
    form = "table"
    i = 0
    while i < len(rest):
        flag = rest[i]
        if flag in ("-c", "-u", "-f") and i + 1 < len(rest):
            value = rest[i + 1]
            if flag == "-c":
                config = value
            elif flag == "-u":
                user = value
            else:
                form = value
            i += 2
            continue
        print(f"mailslot quota: unexpected {flag!r}\n{USAGE}", file=sys.stderr)
        return EX_USAGE
    if user is None or form not in ("tab", "table") or (command == "recalc"
                                                         and form != "table"):
        print(USAGE, file=sys.stderr)
        return EX_USAGE
    quota = open_user_quota(config, user)
    if command == "recalc":
        quota.recalculate()
        return 0
    rows = quota.report()
    sys.stdout.write(format_tab(rows) if form == "tab" else format_table(rows))
    return 0


def open_user_quota(config, name):
    """The Quota of user name, opened as that user."""
    from ..recipient import load_base_settings, resolve
    from ..config import QUOTA_SETTINGS
    base = load_base_settings(config, [])
    rcpt = resolve(base, name, check_user=_become)
    settings, user = rcpt.settings, rcpt.user
    if not any(settings.get(key) for key in QUOTA_SETTINGS):
        raise ConfigError(f"no quota for {user.name}: set quota_rule (or quota) in the "
                          "settings or the userdb")
    from . import open_storage
    from .quota import open_quota
    storage = open_storage(settings["mail_location"], user=user.name, home=user.home,
                           hostname=os.uname().nodename, mail_fsync=settings["mail_fsync"],
                           settings=settings)
    return open_quota(storage, settings)


def _become(user):
    """As root: drop to the user for good (checked). Otherwise: be the user."""
    if os.geteuid() != 0:
        if user.uid != os.getuid():
            raise PrivilegeError(f"user {user.name} has uid {user.uid}, not ours "
                                 f"({os.getuid()}): run this as root or as the user")
        return
    # What the count needs, loaded while root can still read any interpreter's
    # modules (a root-only Python installation would be out of reach afterwards).
    import fcntl  # noqa: F401
    from . import maildir, mbox, quota, quota_maildirsize  # noqa: F401
    from .. import mailbox_name  # noqa: F401
    # Why this order: groups and gid while we still may change them, the uid last.
    os.setgroups([user.gid])
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    if os.getresuid() != (user.uid,) * 3 or os.getresgid() != (user.gid,) * 3:
        raise PrivilegeError(f"could not become {user.name}")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise PrivilegeError(f"could still regain root after becoming {user.name}")


def format_tab(rows):
    lines = ["\t".join(HEADERS)] + ["\t".join(row) for row in rows]
    return "\n".join(lines) + "\n"


def format_table(rows):
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(HEADERS)]
    used = sum(widths) + len(widths) - 1
    if used < TABLE_COLUMNS:
        widths[-1] += (TABLE_COLUMNS - used) // 2
    out = []
    for row in [HEADERS] + list(rows):
        cells = [cell.rjust(w) if right else cell.ljust(w)
                 for cell, w, right in zip(row, widths, RIGHT_ALIGNED)]
        out.append(" ".join(cells))
    return "\n".join(out) + "\n"

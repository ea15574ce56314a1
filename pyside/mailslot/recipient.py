"""Who a recipient is, and the settings their delivery runs with.

    base = load_base_settings(config_path, overrides)      # once per process
    rcpt = resolve(base, "bob+lists@example.org", overrides)
    rcpt.user, rcpt.settings, rcpt.fields, rcpt.extra

resolve() finds the user (find_user: the detail is stripped by recipient_delimiter,
the name normalised as Dovecot's auth process does, then the userdbs are asked),
then builds this recipient's settings: a fresh copy of the base settings (never
the base itself, so one recipient's userdb fields cannot leak into the next one's
delivery in a long-lived process), the userdb's fields applied over it (mail ->
mail_location, any setting, namespace/...), -o applied again (it wins, as in
dovecot-lda), the uid and gid checked against first/last_valid_uid/gid, and the
per-user %variables expanded (mail_location, log paths ...).

Userdb fields that are not settings (quota_rule, quota_rule2, ... for the features
that will read them) are not dropped: rcpt.extra holds them, rcpt.fields has every
field the userdb answered.

Errors: UserUnknownError (67) for a name no userdb knows; UserdbError (75) when a
userdb cannot answer; ConfigError (75) for a field or -o value that is not a valid
setting or a template that does not expand; PrivilegeError (75) for a uid or gid
outside the valid ranges, or 0.

Security: the recipient name comes from the sender; it reaches the userdbs only
through normalize_username (Dovecot's checks) and is never a path by itself (the
userdb drivers cut %values at '/'). This module does not look at the process's
own uid: whether this process may deliver for the user is the front's decision
(cli.py: the uid must be ours; the relay is the way to deliver for others).
"""

import os


class Recipient:
    """One resolved recipient: the User, its settings (a private copy), its userdb
    fields (all of them) and extra (the ones that are not settings)."""

    __slots__ = ("name", "user", "settings", "fields", "extra")

    def __init__(self, name, user, settings, fields, extra):
        self.name = name            # as given (-d, RCPT TO), None for the running user
        self.user = user
        self.settings = settings
        self.fields = fields
        self.extra = extra

    def __repr__(self):
        return f"Recipient({self.name!r}, {self.user!r}, extra={self.extra!r})"


def load_base_settings(config_path, overrides):
    """The settings file with -o applied: the base every recipient starts from."""
    from .config import apply_overrides, load_settings
    settings = load_settings(config_path)
    apply_overrides(settings, overrides, source="-o")
    return settings


def resolve(base, name, overrides=(), *, values=None, check_user=None):
    """Return the Recipient for name (None: the running user) over base settings.

    values adds %variables for the expansion (hostname, pid default to this
    system's and this process's); check_user(user), when given, runs after the
    uid/gid range check and before the expansion (the pipe's "is it our uid").
    base is not changed.
    """
    settings = copy_settings(base)
    user = find_user(name, settings)
    fields = dict(user.fields)
    extra = {}
    if fields:
        from .config import SCHEMA, apply_overrides
        pairs = []
        for key, value in fields.items():
            if key == "mail":
                pairs.append(("mail_location", value))
            elif key in SCHEMA or key.startswith("namespace/"):
                pairs.append((key, value))
            else:
                extra[key] = value      # kept for quota and other later features
        apply_overrides(settings, pairs, source="userdb")
        apply_overrides(settings, overrides, source="-o")
    check_valid_ids(user, settings)
    if check_user is not None:
        check_user(user)
    expand_for_user(settings, user, values)
    return Recipient(name, user, settings, fields, extra)


def copy_settings(settings):
    """A deep copy of a settings dict (dicts and lists copied, values shared:
    they are str, int and bool). Cheaper than copy.deepcopy and no import."""
    copy = dict(settings)
    for key, value in copy.items():
        if isinstance(value, _CONTAINERS):      # the few dicts and lists (userdb, ...)
            copy[key] = _copy(value)
    return copy


_CONTAINERS = (dict, list)


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def expand_for_user(settings, user, values=None):
    """Expand the per-user %variables (%u, %h, %{hostname}, %{pid}, ...) in place.

    The expander (variables.py) is imported only when a setting holds a '%' other
    than the default postmaster_address, which is filled in directly."""
    from .config import POSTMASTER_DEFAULT, USER_TEMPLATES, expand_user_settings
    hostname = settings["hostname"] or os.uname().nodename
    if settings["postmaster_address"] == POSTMASTER_DEFAULT and not values:
        # Dovecot's default, postmaster@%d or @%{hostname} (config.postmaster_template).
        domain = user.name.partition("@")[2]
        settings["postmaster_address"] = "postmaster@" + (domain or hostname)
    if not any("%" in (settings.get(name) or "") for name in USER_TEMPLATES):
        return
    from .variables import user_values
    merged = user_values(user.name, user.home)
    merged["hostname"] = hostname
    merged["pid"] = str(os.getpid())
    if values:
        merged.update(values)
    expand_user_settings(settings, merged)


def find_user(name, settings):
    """Return the User for name, or the running user when name is None.

    user+detail@domain loses its detail (recipient_delimiter), then the name is
    normalised as Dovecot's auth process does (auth_username_format ...) before
    the userdbs are asked.
    """
    if name is None:
        from .user import current_user   # the plain path: no userdb package
        return current_user()
    from . import userdb
    lookup_name = userdb.normalize_username(
        strip_detail(name, settings["recipient_delimiter"]), settings)
    user = userdb.lookup(lookup_name, settings["userdb"], settings=settings)
    if user is None:
        from .errors import UserUnknownError
        raise UserUnknownError(f"User doesn't exist: {userdb.printable(name)}")
    return user


def strip_detail(name, delimiters):
    """Return user@domain for user+detail@domain (recipient_delimiter characters)."""
    if not delimiters:
        return name
    local, at, domain = name.rpartition("@") if "@" in name else (name, "", "")
    cut = min((i for i in (local.find(d) for d in delimiters) if i > 0),
              default=-1)
    if cut > 0:
        local = local[:cut]
    return local + at + domain


def check_valid_ids(user, settings):
    """The target's uid and gid must lie in the valid ranges and never be 0."""
    first, last = settings["first_valid_uid"], settings["last_valid_uid"]
    if user.uid == 0 or user.uid < first or (last and user.uid > last):
        from .errors import PrivilegeError
        raise PrivilegeError(f"Mail access for users with UID {user.uid} not permitted "
                             f"(see first_valid_uid in config file, uid {user.uid} "
                             f"of user {user.name})")
    first, last = settings["first_valid_gid"], settings["last_valid_gid"]
    if user.gid == 0 or user.gid < first or (last and user.gid > last):
        from .errors import PrivilegeError
        raise PrivilegeError(f"Mail access for users with GID {user.gid} not permitted "
                             f"(see first_valid_gid in config file, user {user.name})")

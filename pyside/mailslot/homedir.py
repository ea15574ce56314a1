"""Before the first save: the user's home and mail root exist, or say what to do.

check_mail_root(settings, user) looks at the directory a delivery into INBOX needs
(the INBOX= path of the expanded mail_location, else its root), and at the home
when a log file is to be written in it, and decides as dovecot-lda does. It runs before the delivery log is opened, so that a log_path in
a missing home gets this explanation too, not "cannot open the log":

  - it exists: nothing to do (one stat on the plain path);
  - it is missing but a parent the user may write exists: the storage creates what
    is missing, as Dovecot creates its mail root. A missing home is made here first,
    mode 0700, as Dovecot makes it (mkdir with the user's uid, nothing else is
    created above it);
  - it is missing and cannot be created by this uid: a StorageError (exit 75, the
    MTA keeps the mail) that names what is missing and what to do --
    "home /srv/mail/example.org/alice does not exist (create it owned by uid 2001)"
    -- instead of the EACCES the first mkdir would report. Dovecot defers such mail
    too (mkdir ... failed: Permission denied, missing +w perm).

One case gets its own words: a home that does not exist for the uid nobody (or the
home /nonexistent). Postfix's local(8) runs mailbox_command for mail to root as
default_privs (nobody, home /nonexistent), so the postmaster's mail would defer for
ever: the error says to alias root to a real user (docs/deployment.md).

Errors: StorageError (temporary). An OSError other than "missing" while looking
(EACCES on a parent the admin closed) is left to the storage, which names it.

Security: the paths are the administrator's (mail_location, the userdb's home),
never the sender's. Nothing is created above the home, nothing as another uid (the
process already runs as the user: the relay dropped to it), and a new home is 0700
whatever the umask, so no one else can read the mail that will be put in it.
"""

import os

from .errors import StorageError

# Dovecot's mode for a home it creates (and the storage's for a new mail root):
# private to its user.
NEW_HOME_MODE = 0o700
# The home Debian's and Postfix's unprivileged users have: it never exists.
NONEXISTENT_HOMES = ("/nonexistent",)
NOBODY = "nobody"


def needed_directory(location):
    """The directory a delivery into INBOX cannot do without."""
    if location.inbox:
        return location.inbox if location.format != "mbox" else os.path.dirname(location.inbox)
    return location.root


def check_mail_root(settings, user):
    """Make sure the user's INBOX can be created or opened; see the module doc.

    settings: the user's settings, %variables expanded (mail_location, log_path,
    info_log_path)."""
    from .storage.location import parse_mail_location
    path = needed_directory(parse_mail_location(settings["mail_location"], home=user.home))
    home = (user.home or "").rstrip("/")
    # A log file in the home needs the home as much as a mailbox in it does (the
    # Postfix test's mbox spool is outside the home, its log_path ~/mailslot.log).
    logs_in_home = home and any(
        _within(settings.get(key) or "", home) for key in ("log_path", "info_log_path"))
    if (not path or _exists(path)) and not logs_in_home:
        return
    if home and (logs_in_home or _within(path, home)) and not _exists(home):
        _make_home(home, user)
        return
    if not path or _exists(path):
        return
    existing = _first_existing_parent(path)
    if existing is None or os.access(existing, os.W_OK | os.X_OK):
        return                  # the storage creates the rest (or names its error)
    missing = _child_towards(existing, path)
    raise StorageError(f"mail root {path} does not exist and uid {user.uid} may not "
                       f"create it in {existing} (create {missing} owned by uid "
                       f"{user.uid})")


def _make_home(home, user):
    parent = os.path.dirname(home) or "/"
    if _nobody(user):
        raise StorageError(
            f"home {home} of {user.name} (uid {user.uid}) does not exist: this is "
            f"probably mail for root, which Postfix's local(8) delivers as "
            f"{user.name} (default_privs); alias root to a real user in /etc/aliases "
            "(root: alice), then run newaliases")
    if not _exists(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise StorageError(f"home {home} does not exist (create it owned by uid "
                           f"{user.uid})")
    try:
        # Why NEW_HOME_MODE: a home for mail is private to its user (the umask
        # mkdir applies can only take bits away from 0700).
        os.mkdir(home, NEW_HOME_MODE)
    except FileExistsError:
        return                  # made meanwhile (another delivery): fine
    except OSError as exc:
        raise StorageError(f"home {home} does not exist and cannot be created "
                           f"({exc.strerror}): create it owned by uid {user.uid}") from None


def _within(path, home):
    """True when path is home or below it (a log path may still say ~/)."""
    return path == home or path.startswith((home + "/", "~/"))


def _nobody(user):
    return user.name == NOBODY or (user.home or "").rstrip("/") in NONEXISTENT_HOMES


def _exists(path):
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True             # there, but not ours to look at: the storage says so
    return True


def _first_existing_parent(path):
    parent = os.path.dirname(path.rstrip("/"))
    while parent and parent != "/":
        if _exists(parent):
            return parent
        parent = os.path.dirname(parent)
    return "/" if path.startswith("/") else None


def _child_towards(parent, path):
    """The component of path just below parent: the first directory to create."""
    rest = path[len(parent.rstrip("/")) + 1:]
    return parent.rstrip("/") + "/" + rest.split("/", 1)[0]

"""The engine's side of the relay's promise: check the identity it was handed.

mailslot-relay (helper_c/mailslot-relay.c) resolves the recipient, drops to its uid,
gid and groups, and execs the engine with the identity it promised in the
environment:

    MAILSLOT_RELAY_USER    the user name (-d)
    MAILSLOT_RELAY_UID     its uid          MAILSLOT_RELAY_GID   its gid
    MAILSLOT_RELAY_HOME    its home         MAILSLOT_RELAY_GROUPS  "gid,gid,..."

verify_relay_promise(environ) checks, before any delivery work, that the process
really is what was promised: real, effective and saved uid all the announced uid and
not 0; the same for the gids; the supplementary groups exactly the announced list; no
capability in the effective, permitted, inheritable (or ambient) set. Then it makes
the process non-dumpable and names it "mailslot-lda: <user>".

Errors: every broken promise raises errors.PrivilegeError (a temporary failure, exit
75): the message is kept, nothing is delivered by a process whose identity is wrong.

Security notes: the variables are only a claim to compare with; the kernel's ids are
the truth. A caller cannot forge them to gain anything: the relay rebuilds the
environment and never passes MAILSLOT_* from its caller, and a forged claim can only
make this check fail. python-prctl is imported lazily (the pipe path without the
relay never pays for it); under `python3 -I -S` site-packages are not on sys.path, so
site.main() adds them first (root-owned system directories only: -I has already
removed the user site and the PYTHON* variables).
"""

import os

from .errors import PrivilegeError

# The kernel keeps 16 bytes of process name, the last one a NUL (prctl(2) PR_SET_NAME).
PROCESS_NAME_MAX = 15
# NGROUPS_MAX on Linux (<linux/limits.h>): the most groups an announcement may list.
NGROUPS_MAX = 65536

RELAY_USER = "MAILSLOT_RELAY_USER"
RELAY_UID = "MAILSLOT_RELAY_UID"
RELAY_GID = "MAILSLOT_RELAY_GID"
RELAY_GROUPS = "MAILSLOT_RELAY_GROUPS"


def _parse_id(environ, name):
    """The decimal id in environ[name]; PrivilegeError if absent or malformed."""
    value = environ.get(name)
    if value is None or not value.isdigit() or not value.isascii() or len(value) > 10:
        raise PrivilegeError(f"relay promise: {name} is missing or not a number")
    return int(value)


def _parse_groups(environ):
    value = environ.get(RELAY_GROUPS)
    if value is None:
        raise PrivilegeError(f"relay promise: {RELAY_GROUPS} is missing")
    if value == "":
        return set()
    items = value.split(",")
    if len(items) > NGROUPS_MAX or not all(i.isdigit() and i.isascii() for i in items):
        raise PrivilegeError(f"relay promise: {RELAY_GROUPS} is not a list of gids")
    return {int(i) for i in items}


def _import_prctl():
    """python-prctl, from the system site-packages even under -S."""
    from .sitepath import enable_site_packages

    enable_site_packages()
    try:
        import prctl
    except ImportError as exc:
        raise PrivilegeError("relay promise: python-prctl is not installed; "
                             "cannot check capabilities") from exc
    return prctl


def _held_capabilities(prctl):
    """Names of capabilities held in the effective, permitted or inheritable set."""
    held = []
    for label, capset in (("effective", prctl.cap_effective),
                          ("permitted", prctl.cap_permitted),
                          ("inheritable", prctl.cap_inheritable)):
        for name in prctl.ALL_CAP_NAMES:        # "chown", "setuid", ...
            if getattr(capset, name):
                held.append(f"{label}:CAP_{name.upper()}")
    return held


def _ambient_capabilities():
    """The ambient set (python-prctl has no accessor): from /proc/self/status."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapAmb:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def verify_relay_promise(environ):
    """Check that this process has exactly the identity the relay announced.

    Raises PrivilegeError on any difference; on success the process is non-dumpable
    and named "mailslot-lda: <user>".
    """
    user = environ.get(RELAY_USER)
    if not user:
        raise PrivilegeError(f"relay promise: {RELAY_USER} is missing")
    uid = _parse_id(environ, RELAY_UID)
    gid = _parse_id(environ, RELAY_GID)
    groups = _parse_groups(environ)
    # Root is never a delivery identity: a relay that announced 0 is broken.
    if uid == 0 or gid == 0 or 0 in groups:
        raise PrivilegeError("relay promise: the announced identity is root")
    # The kernel's view, all three of each: a saved root uid could be regained.
    if os.getresuid() != (uid, uid, uid):
        raise PrivilegeError(f"relay promise: uids are {os.getresuid()}, not all {uid}")
    if os.getresgid() != (gid, gid, gid):
        raise PrivilegeError(f"relay promise: gids are {os.getresgid()}, not all {gid}")
    held_groups = set(os.getgroups())
    if held_groups != groups:
        raise PrivilegeError(f"relay promise: groups are {sorted(held_groups)}, "
                             f"not {sorted(groups)}")
    prctl = _import_prctl()
    held = _held_capabilities(prctl)
    if held or _ambient_capabilities():
        raise PrivilegeError("relay promise: capabilities held: "
                             + (", ".join(held) if held else "ambient set"))
    # A core dump would hold the message, and other users' mail paths.
    prctl.set_dumpable(False)
    if prctl.get_dumpable():
        raise PrivilegeError("relay promise: cannot make the process non-dumpable")
    title = f"mailslot-lda: {user}"
    prctl.set_name(title[:PROCESS_NAME_MAX])
    try:
        prctl.set_proctitle(title)
    except (OSError, ValueError):
        pass  # cosmetic: ps shows the interpreter's command line instead

"""Where Sieve scripts are, and whether a delivery has any: no interpreter needed.

"file:~/sieve;active=~/.dovecot.sieve" names a directory of scripts and the active
one (Pigeonhole's script location syntax); a plain path names one script.
has_scripts() answers "does this delivery run Sieve at all?" with the settings and
at most one stat, so the plain delivery path never imports the sieve package: this
module lives outside it (importing mailslot.sieve.location would import the
package's __init__ first). The interpreter's modules use the same functions through
sieve/location.py.

Errors: none; a script that cannot be looked at (EACCES) counts as absent here, and
the runner reports it when a script does run.

Security: paths come from settings and userdb fields, never from the message; "~"
is the user's home.
"""

import os

# Settings that name administrator scripts: any of them set means Sieve runs.
ADMIN_SCRIPT_SETTINGS = ("sieve_before", "sieve_before2", "sieve_before3", "sieve_after",
                         "sieve_after2", "sieve_after3", "sieve_default")
_S_IFMT, _S_IFREG, _S_IFDIR = 0o170000, 0o100000, 0o040000


def expand_home(path, home):
    if path.startswith("~/") and home:
        return os.path.join(home, path[2:])
    if path == "~" and home:
        return home
    return path


def _split(value, home):
    """A location -> (main path or None, active path or None), "~" expanded."""
    text = value[5:] if value.startswith("file:") else value
    main, *options = text.split(";")
    opts = {}
    for opt in options:
        key, _, val = opt.partition("=")
        opts[key.strip()] = val.strip()
    main = expand_home(main.strip(), home) if main.strip() else None
    active = expand_home(opts["active"], home) if opts.get("active") else None
    return main, active


def parse_location(value, home):
    """A Pigeonhole script location -> (storage dir or None, script path or None).

    "file:~/sieve;active=~/.dovecot.sieve" (a directory of scripts and the
    active one) or a plain path to one script ("~/.dovecot.sieve").
    """
    if not value:
        return None, None
    main, active = _split(value, home)
    if active is not None:
        return main, active
    if main is not None and os.path.isdir(main):
        return main, None
    return (os.path.dirname(main) if main else None), main


def has_scripts(settings, home):
    """Whether a delivery has any script to run: a cheap check, no imports.

    The delivery engine asks this before importing the interpreter, so a user
    without a script pays nothing for Sieve. It follows the same rules as
    sieve.delivery_scripts(): the `sieve` location's active script (or the
    location itself when it is a file), and any administrator script setting.
    One stat: the active script, or the plain path (a directory there has no
    active script, as parse_location says).
    """
    if any(settings.get(key) for key in ADMIN_SCRIPT_SETTINGS):
        return True
    value = settings.get("sieve") or ""
    if not value:
        return False
    main, active = _split(value, home)
    script = active if active is not None else main
    if script is None:
        return False
    try:
        return os.stat(script).st_mode & _S_IFMT == _S_IFREG
    except (OSError, ValueError):
        return False

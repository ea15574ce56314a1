"""Where Sieve scripts are: Pigeonhole's script location syntax, and nothing else.

"file:~/sieve;active=~/.dovecot.sieve" names a directory of scripts and the active
one; a plain path names one script. Kept apart from the runner so that the
delivery's "is there any script?" check (sieve.has_scripts) costs one small import.

Security: paths come from settings and userdb fields; "~" is the user's home.
"""

import os


def expand_home(path, home):
    if path.startswith("~/") and home:
        return os.path.join(home, path[2:])
    if path == "~" and home:
        return home
    return path


def parse_location(value, home):
    """A Pigeonhole script location -> (storage dir or None, script path or None).

    "file:~/sieve;active=~/.dovecot.sieve" (a directory of scripts and the
    active one) or a plain path to one script ("~/.dovecot.sieve").
    """
    if not value:
        return None, None
    text = value
    if text.startswith("file:"):
        text = text[5:]
    main, *options = text.split(";")
    opts = {}
    for opt in options:
        key, _, val = opt.partition("=")
        opts[key.strip()] = val.strip()
    main = expand_home(main.strip(), home) if main.strip() else None
    active = expand_home(opts["active"], home) if opts.get("active") else None
    if active is not None:
        return main, active
    if main is not None and os.path.isdir(main):
        return main, None
    return (os.path.dirname(main) if main else None), main

"""The user database, as a package: this module only hands the public names on.

    lookup.py   the walk over the userdb blocks, username normalization, and the
                built-in passwd and passwd-file drivers (the plain path)
    common.py   User and the helpers every driver shares
    static.py, sql.py (+ pgsql.py), dovecot.py
                the other drivers, imported only when a userdb block names them
                (lookup.LAZY_DRIVERS), so the plain passwd-file path stays lean

Errors and security notes: see lookup.py and each driver's docstring.
"""

from mailslot.userdb.common import User, printable, setting, template_fields
from mailslot.userdb.lookup import (DRIVERS, LAZY_DRIVERS, MAX_ID, check_passwd_file,
                                    current_user, lookup, normalize_username,
                                    register_driver)

__all__ = ["DRIVERS", "LAZY_DRIVERS", "MAX_ID", "User", "check_passwd_file", "current_user",
           "lookup", "normalize_username", "printable", "register_driver", "setting",
           "template_fields"]

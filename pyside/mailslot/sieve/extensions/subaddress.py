"""subaddress (RFC 5233): the :user and :detail address parts.

The separator is recipient_delimiter (Dovecot's setting; default "+"); when it
holds several characters, the first of any of them in the local part splits it.
A local part without a separator has no :detail (it matches nothing), and :user
is the whole local part.
"""

DEFAULT_DELIMITER = "+"
_delimiter = [DEFAULT_DELIMITER]


def set_delimiter(delimiter):
    _delimiter[0] = delimiter or DEFAULT_DELIMITER


def extract_subaddress(localpart, part, delimiter=None):
    delims = delimiter or _delimiter[0]
    if localpart is None:
        return None
    pos = -1
    for i, ch in enumerate(localpart):
        if ch in delims:
            pos = i
            break
    if part == "user":
        return localpart if pos < 0 else localpart[:pos]
    if part == "detail":
        return None if pos < 0 else localpart[pos + 1:]
    return None


def load(v, name):
    v.address_parts["user"] = None
    v.address_parts["detail"] = None
    return True

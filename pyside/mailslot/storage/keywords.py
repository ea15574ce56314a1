"""IMAP keywords (non-system flags) of a save: which ones a storage may store.

    keywords, refused = split_keywords(("\\\\Seen", "Junk", "junk", "bad name"))
    # keywords == ["Junk"]; refused == ["keyword 'bad name' not stored: ..."]

A flag that starts with "\\" is a system flag (or unknown, like \\Recent) and is the
storage's own business; every other flag is a keyword. A keyword is stored only if
Dovecot 2.3 would accept it as a new one (mailbox_keyword_is_valid() in
src/lib-storage/mail-storage.c): not empty, only ASCII characters that may appear
in an IMAP atom (RFC 3501 ATOM-CHAR: no SP, CTL, 8-bit, or any of ( ) { % * " \\ ]),
at most MAIL_MAX_KEYWORD_LENGTH characters. Duplicates are dropped
case-insensitively (ASCII, as Dovecot's strcasecmp), the first spelling wins.
Refused keywords are dropped, never stored, and never fail the delivery (as
Pigeonhole ignores an invalid keyword with a warning): the caller logs the
warning lines split_keywords() returns.

Only the format modules import this, and only when a save carries a flag that is
not a system flag, so that the plain delivery path imports nothing more.

Errors: none.

Security: keyword names come from Sieve scripts and so, indirectly, from whoever
wrote the mail. Because no accepted name holds white space, a control character
(NUL, CR, LF) or a non-ASCII byte, none can add a line to dovecot-keywords or a
header field to an mbox, nor split into two keywords. The warnings quote a refused
name with repr(), cut to WARNING_NAME_MAX characters.
"""

# Dovecot's mail_max_keyword_length default (src/lib-storage/mail-storage-settings.c):
# a longer keyword may not be created.
MAIL_MAX_KEYWORD_LENGTH = 50
# RFC 3501 atom-specials besides SP and CTL (Dovecot's IS_ATOM_SPECIAL, imap-arg.h).
ATOM_SPECIALS = frozenset('(){%*"\\]')
# How much of a refused name a warning quotes.
WARNING_NAME_MAX = 64


def keyword_is_valid(name):
    """True if name is a keyword Dovecot would create (see the module docstring)."""
    if not name or len(name) > MAIL_MAX_KEYWORD_LENGTH:
        return False
    return all(0x20 < ord(c) < 0x7F and c not in ATOM_SPECIALS for c in name)


def quoted(name):
    """A refused name, safe for a log line."""
    return repr(name[:WARNING_NAME_MAX] + ("..." if len(name) > WARNING_NAME_MAX else ""))


def split_keywords(flags):
    """(keywords to store, warnings about refused ones) of a save's flags."""
    keywords, seen, warnings = [], set(), []
    for flag in flags:
        if flag[:1] == "\\":
            continue                    # a system flag: not a keyword
        if not keyword_is_valid(flag):
            why = (f"longer than {MAIL_MAX_KEYWORD_LENGTH} characters (Dovecot's "
                   "mail_max_keyword_length)" if len(flag) > MAIL_MAX_KEYWORD_LENGTH
                   else "not a valid IMAP keyword")
            warnings.append(f"keyword {quoted(flag)} not stored: {why}")
            continue
        folded = flag.lower()           # ASCII only here: strcasecmp's folding
        if folded not in seen:
            seen.add(folded)
            keywords.append(flag)
    return keywords, warnings


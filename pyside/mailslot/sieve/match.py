"""Comparators (RFC 4790) and match types (RFC 5228 2.7.1, RFC 5231) of Sieve.

A comparator is named by its string ("i;octet", "i;ascii-casemap",
"i;ascii-numeric", "i;unicode-casemap"); COMPARATORS maps the name to a Comparator
that can fold, compare and test equality. match(interp, spec, values, keys) runs
one match: spec is the compiled (match-type, relation, comparator) triple; values
and keys are lists of str. :matches and :regex set the match values ${0}..${31}
through interp.set_match_values() on success.

:matches follows Pigeonhole's semantics: each '*' expands to as little as
possible, left to right, with the last literal section anchored at the end; '\\'
escapes the next character in the key. Unlike Pigeonhole, '?' matches one
character, not one octet (RFC 5228 2.7.1 says character).

Errors: none at run time; a pattern is never evaluated as code. The :matches
matcher memoises failed states, so its time is polynomial in the input sizes
(no backtracking bomb); :regex is in extensions/regex.py and runs under the CPU
time limit.
"""

from .limits import MAX_MATCH_VALUES

_ASCII_LOWER = {c: c + 32 for c in range(65, 91)}


def ascii_fold(text):
    """Lower-case ASCII letters only (i;ascii-casemap)."""
    if text.isascii():
        return text.lower()
    return text.translate(_ASCII_LOWER)


def _numeric_key(text):
    """i;ascii-numeric: the leading digits as an int, or None for infinity."""
    end = 0
    for ch in text:
        if "0" <= ch <= "9":
            end += 1
        else:
            break
    if end == 0:
        return None
    return int(text[:end])


def _unicode_fold(text):
    import unicodedata
    # RFC 5051: titlecase-equivalent mapping then canonical decomposition; case
    # folding then NFKD is the usual practical approximation.
    return unicodedata.normalize("NFKD", text.casefold())


class Comparator:
    """One comparator: fold() maps a string to its comparable form."""

    __slots__ = ("name", "fold", "substring", "ordering")

    def __init__(self, name, fold, substring, ordering=True):
        self.name = name
        self.fold = fold
        self.substring = substring
        self.ordering = ordering

    def compare(self, a, b):
        """Return -1, 0 or 1 (ordering of a against b)."""
        if self.fold is None:  # i;ascii-numeric
            na, nb = _numeric_key(a), _numeric_key(b)
            if na is None:
                return 0 if nb is None else 1
            if nb is None:
                return -1
            return (na > nb) - (na < nb)
        fa, fb = self.fold(a), self.fold(b)
        return (fa > fb) - (fa < fb)


def _identity(text):
    return text


COMPARATORS = {
    "i;octet": Comparator("i;octet", _identity, True),
    "i;ascii-casemap": Comparator("i;ascii-casemap", ascii_fold, True),
    "i;ascii-numeric": Comparator("i;ascii-numeric", None, False),
    "i;unicode-casemap": Comparator("i;unicode-casemap", _unicode_fold, True),
}

# Comparators that are always available; the others need their extension
# (comparator-<name>) to be required.
BUILTIN_COMPARATORS = ("i;octet", "i;ascii-casemap")


# -- :matches ---------------------------------------------------------------------

_STAR, _QMARK = 0, 1


def compile_glob(key):
    """Split a :matches key into literal strings, _STAR and _QMARK tokens."""
    tokens = []
    lit = []
    i, n = 0, len(key)
    while i < n:
        ch = key[i]
        if ch == "\\":
            i += 1
            if i < n:
                lit.append(key[i])
        elif ch == "*" or ch == "?":
            if lit:
                tokens.append("".join(lit))
                lit = []
            tokens.append(_STAR if ch == "*" else _QMARK)
        else:
            lit.append(ch)
        i += 1
    if lit:
        tokens.append("".join(lit))
    return tokens


def glob_match(tokens, value):
    """Match value against glob tokens; return the wildcard spans or None.

    Each span is (start, end) in value, one per wildcard in order. Stars take as
    little as they can, left to right. With '?' in the pattern a table of which
    token suffixes can match which value suffixes is built first (O(tokens x
    value)), so no pattern needs backtracking.
    """
    if _QMARK not in tokens:
        return _glob_simple(tokens, value)
    n = len(value)
    ntok = len(tokens)
    # rows[ti][vi]: tokens[ti:] can match value[vi:].
    rows = [None] * (ntok + 1)
    last = bytearray(n + 1)
    last[n] = 1
    rows[ntok] = last
    for ti in range(ntok - 1, -1, -1):
        nxt = rows[ti + 1]
        row = bytearray(n + 1)
        tok = tokens[ti]
        if tok is _STAR:
            acc = 0
            for vi in range(n, -1, -1):
                acc = acc or nxt[vi]
                row[vi] = acc
        elif tok is _QMARK:
            row[:n] = nxt[1:]
        else:
            size = len(tok)
            find = value.find
            pos = find(tok)
            while pos >= 0:
                if pos + size <= n and nxt[pos + size]:
                    row[pos] = 1
                pos = find(tok, pos + 1)
        rows[ti] = row
    if not rows[0][0]:
        return None
    spans = []
    vi = 0
    for ti in range(ntok):
        tok = tokens[ti]
        if tok is _STAR:
            nxt = rows[ti + 1]
            end = vi
            while not nxt[end]:
                end += 1
            spans.append((vi, end))
            vi = end
        elif tok is _QMARK:
            spans.append((vi, vi + 1))
            vi += 1
        else:
            vi += len(tok)
    return spans


def _glob_simple(tokens, value):
    """The star-only case: leftmost sections, last one anchored at the end."""
    n = len(value)
    spans = []
    pos = 0
    i = 0
    ntok = len(tokens)
    # Leading literal must be a prefix.
    if ntok and tokens[0] is not _STAR:
        if not value.startswith(tokens[0]):
            return None
        pos = len(tokens[0])
        i = 1
        if ntok == 1:
            return spans if pos == n else None
    while i < ntok:
        # tokens[i] is a star here.
        star_start = pos
        i += 1
        if i == ntok:
            spans.append((star_start, n))
            return spans
        lit = tokens[i]
        if lit is _STAR:
            spans.append((star_start, star_start))
            continue
        if i == ntok - 1:
            # Last section: anchored at the end.
            if n - len(lit) < pos or not value.endswith(lit):
                return None
            spans.append((star_start, n - len(lit)))
            return spans
        found = value.find(lit, pos)
        if found < 0:
            return None
        spans.append((star_start, found))
        pos = found + len(lit)
        i += 1
    return spans if pos == n else None


# -- the match loop -----------------------------------------------------------------

_RELATIONS = {
    "gt": lambda c: c > 0, "ge": lambda c: c >= 0, "lt": lambda c: c < 0,
    "le": lambda c: c <= 0, "eq": lambda c: c == 0, "ne": lambda c: c != 0,
}

RELATIONS = tuple(_RELATIONS)


def match(interp, spec, values, keys):
    """Run one match of values against keys; True when any pair matches.

    spec is (match_type, relation, comparator_name) as compiled by the validator:
    match_type one of "is", "contains", "matches", "value", "count", "regex".
    """
    mtype, relation, cmp_name = spec
    cmp = COMPARATORS[cmp_name]
    if mtype == "is":
        fold = cmp.fold
        if fold is None:
            for v in values:
                for k in keys:
                    if v == "":
                        if k == "":
                            return True
                    elif cmp.compare(v, k) == 0:
                        return True
            return False
        if fold is _identity:
            folded_keys = keys
        else:
            folded_keys = [fold(k) for k in keys]
        for v in values:
            if v == "":
                if "" in keys:
                    return True
                continue
            if fold(v) in folded_keys:
                return True
        return False
    if mtype == "contains":
        fold = cmp.fold
        folded_keys = [fold(k) for k in keys]
        for v in values:
            if v == "":
                if "" in keys:
                    return True
                continue
            fv = fold(v)
            for k in folded_keys:
                if k in fv:
                    return True
        return False
    if mtype == "matches":
        return _match_glob(interp, cmp, values, keys)
    if mtype == "value":
        test = _RELATIONS[relation]
        for v in values:
            for k in keys:
                if test(cmp.compare(v, k)):
                    return True
        return False
    if mtype == "count":
        test = _RELATIONS[relation]
        count = str(len(values))
        for k in keys:
            if test(cmp.compare(count, k)):
                return True
        return False
    if mtype == "regex":
        from .extensions.regex import match_regex
        return match_regex(interp, cmp, values, keys)
    raise ValueError(mtype)


def _match_glob(interp, cmp, values, keys):
    fold = cmp.fold
    cache = interp.glob_cache
    want = interp.match_values_enabled
    for v in values:
        fv = fold(v)
        for k in keys:
            ck = (k, cmp.name)
            tokens = cache.get(ck)
            if tokens is None:
                tokens = compile_glob(k)
                if fold is not _identity:
                    tokens = [t if t is _STAR or t is _QMARK else fold(t) for t in tokens]
                cache[ck] = tokens
            spans = glob_match(tokens, fv)
            if spans is not None:
                if want:
                    mv = [v] + [v[a:b] for a, b in spans]
                    interp.set_match_values(mv[:MAX_MATCH_VALUES])
                return True
    return False

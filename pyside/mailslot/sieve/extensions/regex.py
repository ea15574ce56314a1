"""regex (draft-ietf-sieve-regex): the :regex match type, POSIX extended syntax.

Pigeonhole compiles keys with glibc's regcomp(REG_EXTENDED [| REG_ICASE]); this
module translates a POSIX ERE (with glibc's GNU extensions: \\w \\W \\s \\S \\b \\B
\\< \\> \\` \\' and back-references) into Python's re syntax, checking it the way
regcomp does and reporting its errors in regerror's words ("invalid regular
expression 'x(' for regex match: unmatched ( or \\(").

Semantics that differ between the engines are translated: '.' matches a
newline, '$' matches only at the end, an unknown escape is the literal
character, bracket expressions take [:class:] names and a leading ']'. POSIX
picks the leftmost-longest match where Python picks the leftmost-first; whether
a key matches is the same, the match values ${0}.. may differ for alternations
such as "a|ab" (documented in docs/sieve.md).

Security: matching runs under the CPU time limit (cpu.py): a catastrophic
pattern like "(a+)+$" is interrupted, the run fails with "execution exceeded
CPU time limit", and the message is kept. This is the only module that imports
re.
"""

from ..diagnostics import sanitize
from ..limits import MAX_MATCH_VALUES

REG_BADPAT = "invalid regular expression"
REG_ECTYPE = "invalid character class name"
REG_EESCAPE = "trailing backslash"
REG_ESUBREG = "invalid back reference"
REG_EBRACK = "unmatched [, [^, [:, [., or [="
REG_EPAREN = "unmatched ( or \\("
REG_EBRACE = "unmatched \\{"
REG_BADBR = "invalid content of \\{\\}"
REG_ERANGE = "invalid range end"
REG_BADRPT = "invalid preceding regular expression"
REG_EEND = "premature end of regular expression"
REG_ECOLLATE = "invalid collation character"
REG_ESIZE = "regular expression too big"

# RE_DUP_MAX in glibc.
DUP_MAX = 0x7FFF

_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
    "lower": "a-z", "space": " \\t\\n\\r\\f\\v", "blank": " \\t",
    "punct": "!-/:-@\\[-`{-~", "print": " -~", "graph": "!-~",
    "cntrl": "\\x00-\\x1f\\x7f", "xdigit": "0-9A-Fa-f",
}


class RegexSyntaxError(ValueError):
    pass


class _LazyRe:
    """The re module, imported when a key is first translated or compiled."""

    def __getattr__(self, name):
        import re as real
        globals()["re"] = real
        return getattr(real, name)


re = _LazyRe()

# Called before every match when set. mailslot-lmtpd sets it (lmtp/isolated.py): off
# the main thread it raises, because the CPU limit's signal cannot interrupt a
# match there, and the delivery is redone in a process of its own.
THREAD_GUARD = None


def _bracket(p, i, icase):
    """Translate a bracket expression starting after '['; return (text, index)."""
    n = len(p)
    out = ["["]
    if i < n and p[i] == "^":
        out.append("^")
        i += 1
    first = True
    items = []    # list of single chars or ("class", text) or ("range", a, b)
    while True:
        if i >= n:
            raise RegexSyntaxError(REG_EBRACK)
        ch = p[i]
        if ch == "]" and not first:
            i += 1
            break
        first = False
        if ch == "[" and i + 1 < n and p[i + 1] in ":.=":
            kind = p[i + 1]
            end = p.find(kind + "]", i + 2)
            if end < 0:
                raise RegexSyntaxError(REG_EBRACK)
            name = p[i + 2:end]
            i = end + 2
            if kind == ":":
                if name not in _CLASSES:
                    raise RegexSyntaxError(REG_ECTYPE)
                items.append(("class", _CLASSES[name]))
                continue
            if len(name) != 1:
                raise RegexSyntaxError(REG_ECOLLATE)
            ch = name
            start_char = ch
        else:
            start_char = ch
            i += 1
        # A range?
        if i + 1 < n and p[i] == "-" and p[i + 1] != "]":
            end_char = p[i + 1]
            i += 2
            if end_char == "[" and i < n and p[i] in ".=":
                kind = p[i]
                close = p.find(kind + "]", i + 1)
                if close < 0:
                    raise RegexSyntaxError(REG_EBRACK)
                end_char = p[i + 1:close]
                i = close + 2
                if len(end_char) != 1:
                    raise RegexSyntaxError(REG_ECOLLATE)
            if ord(end_char) < ord(start_char):
                raise RegexSyntaxError(REG_ERANGE)
            items.append(("range", start_char, end_char))
        else:
            items.append(start_char)
    for item in items:
        if isinstance(item, str):
            out.append(re.escape(item) if item in "\\]^-[" else item)
        elif item[0] == "class":
            out.append(item[1])
        else:
            a, b = item[1], item[2]
            out.append("%s-%s" % (re.escape(a) if a in "\\]^-[" else a,
                                  re.escape(b) if b in "\\]^-[" else b))
    out.append("]")
    return "".join(out), i


def translate(pattern, icase=False):
    """POSIX ERE -> Python regex text; raises RegexSyntaxError(regerror text)."""
    p = pattern
    n = len(p)
    atoms = []          # translated atoms; a group is merged into one at ')'
    repeatable = []     # per atom: a quantifier may follow
    quantified = []     # per atom: it already carries a quantifier
    opens = []          # (index in atoms, group number) of open '('
    groups = 0
    closed = set()
    i = 0

    def add(text, can_repeat):
        atoms.append(text)
        repeatable.append(can_repeat)
        quantified.append(False)

    while i < n:
        ch = p[i]
        if ch == "\\":
            if i + 1 >= n:
                raise RegexSyntaxError(REG_EESCAPE)
            nxt = p[i + 1]
            i += 2
            if nxt in "123456789":
                num = int(nxt)
                if num not in closed:
                    raise RegexSyntaxError(REG_ESUBREG)
                add("(?:\\%d)" % num, True)
            elif nxt in "wWsS":
                add("\\" + nxt, True)
            elif nxt in "bB":
                add("\\" + nxt, False)
            elif nxt == "<":
                add(r"\b(?=\w)", False)
            elif nxt == ">":
                add(r"\b(?<=\w)", False)
            elif nxt == "`":
                add(r"\A", False)
            elif nxt == "'":
                add(r"\Z", False)
            else:
                add(re.escape(nxt), True)
            continue
        if ch == "[":
            text, i = _bracket(p, i + 1, icase)
            add(text, True)
            continue
        if ch == "(":
            groups += 1
            opens.append((len(atoms), groups))
            add("(", False)
            i += 1
            if i < n and p[i] in "*+?{":
                raise RegexSyntaxError(REG_BADRPT)
            continue
        if ch == ")":
            i += 1
            if not opens:
                add(r"\)", True)   # RE_UNMATCHED_RIGHT_PAREN_ORD
                continue
            start, number = opens.pop()
            text = "".join(atoms[start:]) + ")"
            del atoms[start:], repeatable[start:], quantified[start:]
            closed.add(number)
            add(text, True)
            continue
        if ch == "|":
            add("|", False)
            i += 1
            if i < n and p[i] in "*+?{":
                raise RegexSyntaxError(REG_BADRPT)
            continue
        if ch in "*+?{":
            if ch == "{":
                close = p.find("}", i)
                if close < 0:
                    raise RegexSyntaxError(REG_EBRACE)
                body = p[i + 1:close]
                lo, sep, hi = body.partition(",")
                if not lo.isdigit() or (hi and not hi.isdigit()):
                    raise RegexSyntaxError(REG_BADBR)
                lo_n = int(lo)
                hi_n = int(hi) if hi else None
                if lo_n > DUP_MAX or (hi_n is not None and
                                      (hi_n > DUP_MAX or hi_n < lo_n)):
                    raise RegexSyntaxError(REG_BADBR)
                quant = "{%s%s%s}" % (lo, sep, hi)
                i = close + 1
            else:
                quant = ch
                i += 1
            if not atoms or not repeatable[-1]:
                raise RegexSyntaxError(REG_BADRPT)
            if quantified[-1]:
                atoms[-1] = "(?:%s)" % atoms[-1]
            atoms[-1] += quant
            quantified[-1] = True
            continue
        if ch == "^":
            add("^", False)
        elif ch == "$":
            add(r"(?!(?s:.))", False)
        elif ch == ".":
            add(".", True)
        else:
            add(re.escape(ch), True)
        i += 1
    if opens:
        raise RegexSyntaxError(REG_EPAREN)
    return "".join(atoms)


def compile_key(key, icase):
    """Compile a key; raises RegexSyntaxError with regerror's text."""
    flags = re.DOTALL | re.ASCII
    if icase:
        flags |= re.IGNORECASE
    text = translate(key, icase)
    try:
        return re.compile(text, flags)
    except re.error as exc:
        raise RegexSyntaxError(REG_BADPAT) from exc
    except (OverflowError, RecursionError):
        raise RegexSyntaxError(REG_ESIZE) from None


def validate_regex_keys(v, node, cmp_name, keys, key_arg):
    """Compile-time check of :regex keys (literal ones)."""
    if cmp_name not in ("i;octet", "i;ascii-casemap"):
        arg = node.tags.get("match_arg")
        v.error(arg.line if arg is not None else node.line,
                "regex match type only supports i;octet and i;ascii-casemap "
                "comparators")
        return False
    lines = key_arg.string_lines()
    for key, line in zip(keys, lines):
        if isinstance(key, str):
            try:
                compile_key(key, cmp_name == "i;ascii-casemap")
            except RegexSyntaxError as exc:
                v.error(line, "invalid regular expression '%s' for regex match: %s"
                        % (sanitize(key, 128), exc))
                return False
    return True


def load(v, name):
    v.match_types["regex"] = None
    return True


def match_regex(it, cmp, values, keys):
    """Run :regex; on a match set ${0}..${n} (unset groups skipped like Pigeonhole)."""
    if THREAD_GUARD is not None:
        THREAD_GUARD()
    cache = it.ctx.regex_cache
    icase = cmp.name == "i;ascii-casemap"
    compiled = []
    for key in keys:
        ck = (key, icase)
        rx = cache.get(ck)
        if rx is None:
            try:
                rx = compile_key(key, icase)
            except RegexSyntaxError as exc:
                it.ctx.diag.error("",
                                  "invalid regular expression '%s' for regex match: %s"
                                  % (sanitize(key, 128), exc))
                rx = False
            cache[ck] = rx
        compiled.append(rx)
    for value in values:
        for rx in compiled:
            if rx is False:
                continue
            m = rx.search(value)
            if m is None:
                continue
            if it.match_values_enabled:
                mv = []
                skipped = 0
                groups = [m.group(0)] + [m.group(i) for i in range(1, rx.groups + 1)]
                for g in groups[:MAX_MATCH_VALUES]:
                    if g is None:
                        skipped += 1
                        continue
                    mv.extend([""] * skipped)
                    skipped = 0
                    mv.append(g)
                it.set_match_values(mv)
            return True
    return False

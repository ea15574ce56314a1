"""encoded-character (RFC 5228 2.4.2.4): ${hex:..} and ${unicode:..} in strings.

Decoded once, at compile time, in every string argument. An invalid Unicode code
point in a well-formed substitution is an error; anything malformed is left as
written (Pigeonhole's behaviour).
"""

_HEX = "0123456789abcdefABCDEF"


def _skip_ws(s, i, n):
    while i < n:
        ch = s[i]
        if ch == "\r":
            i += 1
            if i >= n or s[i] != "\n":
                return i, False
            continue
        if ch not in " \n\t":
            break
        i += 1
    return i, True


def _hexint(s, i, n, max_digits):
    """Parse hex digits at s[i:]; return (value, new index, ok)."""
    digits = 0
    value = 0
    while i < n and (max_digits == 0 or digits < max_digits):
        ch = s[i]
        if ch in _HEX:
            value = value * 16 + int(ch, 16)
            i += 1
            digits += 1
        else:
            return value, i, digits > 0
    if digits == max_digits:
        if i < n and s[i] in _HEX:
            return value, i, False
        return value, i, True
    return value, i, digits > 0


def _decode(s, i, n, unicode):
    """Decode values at s[i:]; return (text, index, count, bad code point)."""
    out = []
    count = 0
    bad = 0
    raw = bytearray()
    while i < n:
        i, ok = _skip_ws(s, i, n)
        if not ok:
            return None, i, 0, 0
        value, j, ok = _hexint(s, i, n, 0 if unicode else 2)
        if not ok:
            i = j
            break
        i = j
        if unicode:
            if value <= 0x10FFFF and not (0xD800 <= value <= 0xDFFF):
                out.append(chr(value))
            elif bad == 0:
                bad = value if value else -1
        else:
            raw.append(value)
        count += 1
    if not unicode:
        out.append(bytes(raw).decode("utf-8", "surrogateescape"))
    return "".join(out), i, count, bad


def decode_string(v, text, line):
    """The string layer: return the decoded text, or None after an error."""
    if "${" not in text:
        return text
    s = text
    n = len(s)
    out = []
    start = 0          # start of text not yet copied
    i = 0
    while i < n:
        if s[i] != "$" or i + 1 >= n or s[i + 1] != "{":
            i += 1
            continue
        sub_start = i
        i += 2
        mark = i
        while i < n and s[i].isascii() and s[i].isalpha():
            i += 1
        if i >= n or s[i] != ":":
            continue
        kind = s[mark:i].lower()
        i += 1
        if "hex".startswith(kind):
            decoded, i, count, bad = _decode(s, i, n, False)
        elif "unicode".startswith(kind):
            decoded, i, count, bad = _decode(s, i, n, True)
        else:
            continue
        if decoded is None or count == 0:
            continue
        if i < n and s[i] == "}":
            if bad:
                v.error(line, "invalid unicode character 0x%08x in encoded character "
                        "substitution" % (bad if bad > 0 else 0))
                return None
            out.append(s[start:sub_start])
            out.append(decoded)
            i += 1
            start = i
    if start == 0:
        return text
    out.append(s[start:])
    return "".join(out)


def load(v, name):
    v.string_layers.append(decode_string)
    return True

"""Dovecot's mail-html2text, for Sieve's body :text and extracttext.

html_to_text(html) turns an HTML document into plain text the way Dovecot's
mail-html2text does: tags become a space, entities are decoded, script, style and
comments are dropped. Time is linear in the input.

Errors: none; malformed HTML is text.
Security: the HTML is a sender's: one pass, no recursion, nothing is fetched or
run; the caller charges the text to the run's memory budget (bodytext.py).
"""

_WS = " \t\r\n"


def _entity(name):
    import html.entities
    cp = html.entities.name2codepoint.get(name)
    if cp is None:
        low = name.lower()
        for key, value in html.entities.name2codepoint.items():
            if key.lower() == low:
                cp = value
                break
    if cp is not None:
        return chr(cp)
    if name.startswith("#x"):
        digits = name[2:]
        if digits and all(c in "0123456789abcdefABCDEF" for c in digits):
            return _chr(int(digits, 16))
    elif name.startswith("#"):
        digits = name[1:]
        if digits.isdigit():
            return _chr(int(digits))
    return None


def _chr(cp):
    if 0 <= cp <= 0x10FFFF and not (0xD800 <= cp <= 0xDFFF):
        return chr(cp)
    return ""


def _add_space(out):
    if out and out[-1][-1:] not in ("", " ", "\t", "\r", "\n"):
        out.append(" ")


def html_to_text(html):
    """Plain text of an HTML document, as Dovecot's mail-html2text makes it."""
    out = []
    i = 0
    n = len(html)
    low = None
    while i < n:
        c = html[i]
        if c == "<":
            rest = html[i + 1:i + 13]
            if rest.startswith("!--"):
                end = html.find("--", i + 4)
                # Comment: ends at "--" followed by optional white space and ">".
                while end >= 0:
                    j = end + 2
                    while j < n and html[j] in _WS:
                        j += 1
                    if j < n and html[j] == ">":
                        i = j + 1
                        break
                    end = html.find("--", end + 2)
                else:
                    i = n
                continue
            if low is None:
                low = html.lower()
            if low.startswith("script", i + 1) and i + 7 < n and \
                    (html[i + 7] in _WS or html[i + 7] == ">"):
                end = low.find("</script>", i + 8)
                i = n if end < 0 else end + 9
                _add_space(out)
                continue
            if low.startswith("style", i + 1) and i + 6 < n and \
                    (html[i + 6] in _WS or html[i + 6] == ">"):
                end = low.find("</style>", i + 7)
                i = n if end < 0 else end + 8
                _add_space(out)
                continue
            if low.startswith("![cdata[", i + 1):
                end = html.find("]]>", i + 9)
                out.append(html[i + 9:n if end < 0 else end])
                i = n if end < 0 else end + 3
                continue
            # An ordinary tag: skip to '>' outside quotes.
            j = i + 1
            quote = None
            while j < n:
                ch = html[j]
                if quote:
                    if ch == "\\":
                        j += 2
                        continue
                    if ch == quote:
                        quote = None
                elif ch in "\"'":
                    quote = ch
                elif ch == ">":
                    break
                j += 1
            i = j + 1
            if j < n:
                _add_space(out)
            continue
        if c == "&":
            j = i + 1
            while j < n and j - i - 1 < 10 and html[j] != ";" and html[j] not in _WS:
                j += 1
            if j < n and html[j] == ";" and j - i - 1 < 10:
                value = _entity(html[i + 1:j])
                if value:
                    out.append(value)
                i = j + 1
            else:
                i += 1   # a broken entity: the '&' is dropped
            continue
        j = i
        while j < n and html[j] not in "<&":
            j += 1
        out.append(html[i:j])
        i = j
    return "".join(out)

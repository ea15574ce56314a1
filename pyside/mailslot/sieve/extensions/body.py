"""body (RFC 5173): test the message body.

body [COMPARATOR] [MATCH-TYPE] [:raw / :content <types> / :text] <key-list>.
:text (the default) looks at the text parts, HTML turned into text; :content at
the parts of the listed types ("" all, "text" a main type, "text/plain" exact),
transfer-decoded and in UTF-8, a multipart's preamble and epilogue included;
:raw at the undecoded body. Each part is one value. The body test never sets
match variables (RFC 5173 section 6).
"""

from .. import syntax as S
from ..interpreter import TESTS
from ..match import match
from ..defs import CommandDef, TagDef
from .core import link_match_tags, key_list_and_spec

OPT_BODY_TRANSFORM = 5


class TransformTag(TagDef):
    id_code = OPT_BODY_TRANSFORM

    def __init__(self, ident):
        self.identifier = ident

    def validate(self, v, node, args, i):
        if node.tags.get("transform"):
            v.error(args[i].line, "the :raw, :content and :text arguments for the body "
                    "test are mutually exclusive, but more than one was specified")
            return None
        node.tags["transform"] = self.identifier
        if self.identifier == "content":
            tag = args[i]
            param = args[i + 1] if i + 1 < len(args) else None
            if not v.tag_parameter(node, tag, param, None, 0, S.STRING_LIST):
                return None
            types = v.activate_list(node, param)
            if types is None:
                return None
            node.tags["content_types"] = types
            return i + 2
        return i + 1


class Body(CommandDef):
    name = "body"
    is_test = True
    positional = 1

    def registered(self, v, reg):
        link_match_tags(v, reg)
        for ident in ("raw", "content", "text"):
            v.register_tag(reg, TransformTag(ident))

    def validate(self, v, node):
        matched = key_list_and_spec(v, node, node.positional[0], 1)
        if matched is None:
            return False
        keys, spec = matched
        node.data = (node.tags.get("transform", "text"),
                     node.tags.get("content_types"), keys, spec)
        return True

    def compile(self, c, node):
        return ("body", node.line) + node.data


def load(v, name):
    v.register_command(Body(), name)
    return True


def body_sources(it, transform, types):
    """The values the body test looks at, undecoded: (kind, part, range, html)."""
    view = it.ctx.message
    if transform == "raw":
        return [("raw", None, view.body_range(), False)]
    from ..mime import entry_range, flat_parts, message_tree, wanted
    if transform == "text":
        types = ["application/xhtml+xml", "text"]
    out = []
    for entry in flat_parts(message_tree(view)):
        if not wanted(types, entry.part.ctype):
            continue
        kind, rng = entry_range(entry)
        out.append((kind, entry.part, rng, transform == "text" and kind == "part"))
    return out


def _has_body(view):
    data, start, end = view.body_range()
    if start < end:
        return True
    return data.endswith(b"\n\n") or data.endswith(b"\n\r\n") or \
        data in (b"\n", b"\r\n")


def test_body(it, op):
    transform, types, keys, spec = op[2], op[3], op[4], op[5]
    if not _has_body(it.ctx.message):
        # RFC 5173 5: a header not followed by an empty line has no body at all,
        # and every body test is false, even for "".
        return False
    types = it.expand_list(types) if types is not None else [""]
    sources = body_sources(it, transform, types)
    keys = it.expand_list(keys)
    saved = it.match_values_enabled
    it.match_values_enabled = False
    try:
        return _match_sources(it, spec, sources, keys)
    finally:
        it.match_values_enabled = saved


def _match_sources(it, spec, sources, keys):
    """Match body values; :contains and :is stream them, the rest are built whole
    (charged to the memory budget)."""
    from ..bodytext import materialize, text_chunks
    from ..match import COMPARATORS, ascii_fold
    mtype, _, cmp_name = spec
    fold = COMPARATORS[cmp_name].fold
    budget = it.ctx.message.budget
    if mtype == "count":
        return match(it, spec, [""] * len(sources), keys)
    if mtype in ("contains", "is") and cmp_name in ("i;octet", "i;ascii-casemap"):
        pieces = [text_chunks(kind, part, rng, html, budget)
                  for kind, part, rng, html in sources]
        if mtype == "contains":
            return _stream_contains(pieces, keys, fold if fold is ascii_fold else None)
        return _stream_is(pieces, keys, fold if fold is ascii_fold else None)
    values = []
    held = 0
    try:
        for kind, part, rng, html in sources:
            text, cost = materialize(text_chunks(kind, part, rng, html, budget), budget,
                                     "a body part")
            held += cost
            budget.charge(cost, "a body part")    # the folded copy a match makes
            held += cost
            values.append(text)
        return match(it, spec, values, keys)
    finally:
        budget.release(held)


def _stream_contains(values, keys, fold):
    if not keys:
        return False
    if "" in keys:
        return bool(values)
    folded = [fold(k) for k in keys] if fold else keys
    overlap = max(len(k) for k in folded) - 1
    for pieces in values:
        tail = ""
        for piece in pieces:
            window = tail + (fold(piece) if fold else piece)
            for k in folded:
                if k in window:
                    return True
            tail = window[-overlap:] if overlap else ""
    return False


def _stream_is(values, keys, fold):
    if not keys:
        return False
    folded = [fold(k) for k in keys] if fold else keys
    longest = max(len(k) for k in keys)
    for pieces in values:
        got = []
        size = 0
        for piece in pieces:
            size += len(piece)
            if size > longest:
                break        # longer than every key: cannot be equal
            got.append(piece)
        else:
            value = "".join(got)
            if value == "":
                if "" in keys:
                    return True
                continue
            if (fold(value) if fold else value) in folded:
                return True
    return False


TESTS["body"] = test_body

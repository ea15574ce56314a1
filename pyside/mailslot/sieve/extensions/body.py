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


def body_values(it, transform, types):
    view = it.ctx.message
    if transform == "raw":
        return [view.body_bytes().decode("utf-8", "replace")]
    from ..mime import entry_content, flat_parts, wanted
    if transform == "text":
        types = ["application/xhtml+xml", "text"]
    values = []
    for entry in flat_parts(view.mime()):
        ctype = entry.part.ctype
        if not wanted(types, ctype):
            continue
        leaf = not entry.epilogue and entry.part.message is None and \
            not entry.part.children and entry.part.maintype != "multipart"
        values.append(entry_content(entry, text=(transform == "text" and leaf)))
    return values


def test_body(it, op):
    transform, types, keys, spec = op[2], op[3], op[4], op[5]
    types = it.expand_list(types) if types is not None else [""]
    values = body_values(it, transform, types)
    saved = it.match_values_enabled
    it.match_values_enabled = False
    try:
        return match(it, spec, values, it.expand_list(keys))
    finally:
        it.match_values_enabled = saved


TESTS["body"] = test_body

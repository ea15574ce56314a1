"""index (RFC 5260 section 6): :index n [:last] on header, address and date.

:index picks the n-th of the named header fields, counted over all the names in
the order they occur in the list of values, from the top or (:last) from the
bottom; n = 0 is an error.
"""

from .. import syntax as S
from ..defs import TagDef


class IndexTag(TagDef):
    identifier = "index"

    def validate(self, v, node, args, i):
        tag = args[i]
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, tag, param, None, 0, S.NUMBER):
            return None
        if param.value == 0:
            v.error(param.line, "the :index tag for the %s %s cannot be zero"
                    % (node.name, node.kind_name()))
            return None
        node.tags["index"] = param.value
        return i + 2


class LastTag(TagDef):
    identifier = "last"

    def validate(self, v, node, args, i):
        if not any(a.kind == S.TAG and a.value.lower() == "index" for a in args):
            v.error(args[i].line, "the :last tag for the %s %s cannot be specified "
                    "without the :index tag" % (node.name, node.kind_name()))
            return None
        node.tags["last"] = True
        return i + 1


def load(v, name):
    for command in ("header", "address", "date"):
        v.register_external_tag(command, IndexTag())
        v.register_external_tag(command, LastTag())
    return True


def apply_index(p, values):
    n = p["index"]
    if p.get("last"):
        return [values[-n]] if n <= len(values) else []
    return [values[n - 1]] if n <= len(values) else []

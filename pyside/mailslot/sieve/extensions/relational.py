"""relational (RFC 5231): the :value and :count match types.

Each takes a relation, a constant string among "gt" "ge" "lt" "le" "eq" "ne";
:count counts the values (header fields, addresses, strings) and compares the
count with each key using the comparator (normally i;ascii-numeric).
"""

from .. import syntax as S
from ..diagnostics import sanitize
from ..match import RELATIONS

_MSG = ("the :%s match-type requires a constant string argument being one of "
        "\"gt\", \"ge\", \"lt\", \"le\", \"eq\" or \"ne\", but %s was found")


def _relation_hook(v, node, args, i):
    tag = args[i]
    mtype = tag.data
    param = args[i + 1] if i + 1 < len(args) else None
    if param is None or param.kind != S.STRING:
        v.error(tag.line if param is None else param.line,
                _MSG % (mtype, "none" if param is None else param.type_name()))
        return None
    if param.value not in RELATIONS:
        v.error(param.line, _MSG % (mtype, '"%s"' % sanitize(param.value, 32)))
        return None
    node.tags["relation"] = param.value
    return i + 2


def load(v, name):
    v.match_types["value"] = _relation_hook
    v.match_types["count"] = _relation_hook
    return True

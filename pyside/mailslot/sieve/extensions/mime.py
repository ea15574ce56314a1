"""mime, foreverypart and extracttext (RFC 5703).

foreverypart [:name n] { ... } runs its block once for each MIME part (the
message itself first, then every part below it, depth first; a nested loop
walks the parts below the current one); break [:name n] leaves a loop. Inside a
loop, header/address/exists with :mime look at the current part's header
(:anychild: and the parts below it); :type, :subtype, :contenttype and :param
pick pieces of Content-Type / Content-Disposition. extracttext [:first n] sets a
variable to the current part's text. Loops nest at most MAX_LOOP_DEPTH deep.
"""

from .. import syntax as S
from ..interpreter import HANDLERS, BreakLoop
from ..limits import MAX_LOOP_DEPTH
from ..defs import CommandDef, TagDef

OPTIONS = ("type", "subtype", "contenttype", "param")


class MimeTag(TagDef):
    identifier = "mime"

    def validate(self, v, node, args, i):
        node.tags["mime"] = True
        return i + 1


class MimeOptionTag(TagDef):
    def __init__(self, ident):
        self.identifier = ident

    def validate(self, v, node, args, i):
        tag = args[i]
        if not any(a.kind == S.TAG and a.value.lower() == "mime" for a in args):
            v.error(tag.line, "the :%s tag for the %s %s cannot be specified without "
                    "the :mime tag" % (tag.value, node.name, node.kind_name()))
            return None
        if self.identifier == "anychild":
            node.tags["anychild"] = True
            return i + 1
        param = args[i + 1] if i + 1 < len(args) else None
        if node.tags.get("mime_option"):
            v.error(param.line if param is not None else tag.line,
                    "the :type, :subtype, :contenttype, and :param arguments for the "
                    "%s test are mutually exclusive, but more than one was specified"
                    % node.name)
            return None
        node.tags["mime_option"] = self.identifier
        if self.identifier == "param":
            if not v.tag_parameter(node, tag, param, None, 0, S.STRING_LIST):
                return None
            value = v.activate_list(node, param)
            if value is None:
                return None
            node.tags["mime_param"] = value
            return i + 2
        return i + 1


class NameTag(TagDef):
    identifier = "name"

    def validate(self, v, node, args, i):
        tag = args[i]
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, tag, param, None, 0, S.STRING):
            return None
        node.tags["name"] = param.value
        return i + 2


class ForEveryPart(CommandDef):
    name = "foreverypart"
    block_allowed = True
    block_required = True

    def registered(self, v, reg):
        v.register_tag(reg, NameTag())

    def validate(self, v, node):
        nesting = 0
        parent = node.parent
        while parent is not None:
            if parent.name.lower() == "foreverypart":
                nesting += 1
            parent = parent.parent
        if nesting + 1 > MAX_LOOP_DEPTH:
            v.error(node.line, "the nested foreverypart loop exceeds the nesting limit "
                    "(<= %d levels)" % MAX_LOOP_DEPTH)
            return False
        return True

    def compile(self, c, node):
        return ("foreverypart", node.line, node.tags.get("name"),
                c.block(node.block or []))


class Break(CommandDef):
    name = "break"

    def registered(self, v, reg):
        v.register_tag(reg, NameTag())

    def validate(self, v, node):
        name = node.tags.get("name")
        parent = node.parent
        while parent is not None:
            if parent.name.lower() == "foreverypart" and (
                    name is None or parent.tags.get("name") == name):
                return True
            parent = parent.parent
        if name is None:
            v.error(node.line, "the break command is not placed inside a foreverypart "
                    "loop")
        else:
            v.error(node.line, "the break command is not placed inside a foreverypart "
                    "loop named `%s'" % name)
        return False

    def compile(self, c, node):
        return ("break", node.line, node.tags.get("name"))


class FirstTag(TagDef):
    identifier = "first"

    def validate(self, v, node, args, i):
        tag = args[i]
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, tag, param, None, 0, S.NUMBER):
            return None
        node.tags["first"] = param.value
        return i + 2


class ExtractText(CommandDef):
    name = "extracttext"
    positional = 1

    def registered(self, v, reg):
        v.register_tag(reg, FirstTag())
        from .variables import ModifierTag
        v.register_tag(reg, ModifierTag())

    def validate(self, v, node):
        from .variables import PRECEDENCE, variable_target
        arg = node.positional[0]
        if not v.check_positional(node, arg, "varname", 1, S.STRING):
            return False
        target = variable_target(v, node, arg)
        if target is None:
            return False
        parent = node.parent
        while parent is not None and parent.name.lower() != "foreverypart":
            parent = parent.parent
        if parent is None:
            v.error(node.line, "the extracttext command is not placed inside a "
                    "foreverypart loop")
            return False
        mods = sorted(node.tags.get("modifiers", []), key=lambda m: -PRECEDENCE[m])
        node.data = (target, node.tags.get("first"), mods)
        return True

    def compile(self, c, node):
        return ("extracttext", node.line) + node.data


def _check_extracttext(v, arg, required):
    if v.variables is None:
        v.error(arg.line if arg else 0, "extracttext extension cannot be used without "
                "variables extension")
        return False
    if not v.extension_loaded("foreverypart"):
        v.error(arg.line if arg else 0, "extracttext extension cannot be used without "
                "foreverypart extension")
        return False
    return True


def load(v, name):
    if name == "mime":
        tag = MimeTag()
        for command in ("header", "address", "exists"):
            v.register_external_tag(command, tag)
            # RFC 5703 4.1: :type, :subtype, :contenttype and :param belong to
            # header only; address and exists take just :anychild.
            options = ("anychild",) + (OPTIONS if command == "header" else ())
            for ident in options:
                v.register_external_tag(command, MimeOptionTag(ident))
    elif name == "foreverypart":
        v.register_command(ForEveryPart(), name)
        v.register_command(Break(), name)
    else:
        v.register_command(ExtractText(), name)
        v.post_validators.append((name, _check_extracttext))
    return True


# -- run time ---------------------------------------------------------------------

def _tree(it):
    from ..mime import message_tree
    return message_tree(it.ctx.message)


def _all_parts(root):
    from ..mime import flat_parts
    return [e.part for e in flat_parts(root) if not e.epilogue]


def _descendants(part):
    from ..mime import flat_parts
    out = [e.part for e in flat_parts(part) if not e.epilogue]
    return out[1:]


def run_foreverypart(it, op):
    name, block = op[2], op[3]
    if len(it.loop_parts) >= MAX_LOOP_DEPTH:
        # Only reachable through include (the compiler checks one script).
        it.error("new program loop exceeds the nesting limit (<= %d levels)"
                 % MAX_LOOP_DEPTH)
    if it.loop_parts:
        parts = _descendants(it.loop_parts[-1][1])
    else:
        parts = _all_parts(_tree(it))
    for part in parts:
        it.loop_parts.append((name, part))
        try:
            it.run_block(block)
        except BreakLoop as brk:
            if brk.name is None or brk.name == name:
                return
            raise
        finally:
            it.loop_parts.pop()


def run_break(it, op):
    raise BreakLoop(op[2])


def run_extracttext(it, op):
    from .variables_runtime import apply_modifier, assign
    target, first, mods = op[2], op[3], op[4]
    part = it.loop_parts[-1][1]
    if part.children or part.maintype == "multipart" or part.message is not None:
        text = ""
    elif mods:
        text = part.text()       # a modifier sees the whole text (charged)
    else:
        text = _leading_text(it, part, first)
    if first is not None:
        data = text.encode("utf-8", "surrogateescape")
        if first < len(data):
            text = data[:first].decode("utf-8", "ignore")
    for mod in mods:
        text = apply_modifier(it, mod, text)
    assign(it, target, text)


def _leading_text(it, part, first):
    """Enough of a part's text for a variable (no modifiers): the variable keeps
    at most :first and at most max_variable_size bytes, so the rest is not read."""
    from ..bodytext import text_chunks
    limit = it.ctx.settings.max_variable_size
    if first is not None:
        limit = min(limit, first) if limit else first
    got = []
    size = 0
    for piece in text_chunks("part", part, part.body, True, it.ctx.message.budget):
        got.append(piece)
        size += len(piece)
        if limit and size > limit:
            break
    return "".join(got)


def mime_header_values(it, p, names, decoded):
    """Header values for a test with :mime (see the module docstring)."""
    from ..mail import decode_words
    from ..mime import parse_parameters
    anychild = p.get("anychild", False)
    if it.loop_parts:
        current = it.loop_parts[-1][1]
        parts = [current] + (_descendants(current) if anychild else [])
        use_view = False
    elif anychild:
        parts = _all_parts(_tree(it))
        use_view = False
    else:
        parts = None
        use_view = True
    values = []
    for name in names:
        low = name.lower()
        if use_view:
            raw = it.ctx.message.header_values(name)
            values.extend((low, v) for v in raw)
            continue
        for part in parts:
            for n, v in part.fields:
                if n.lower() == low:
                    values.append((low, v))
    option = p.get("mime_option")
    out = []
    for low, value in values:
        if decoded and "=?" in value:
            value = decode_words(value)
        if option is None:
            out.append(value)
            continue
        if low not in ("content-type", "content-disposition"):
            out.append("")
            continue
        token, params = parse_parameters(value, keep_case=True)
        valid = _valid_token(token, low == "content-type")
        if option == "param":
            if not valid:
                out.append("")
                continue
            wanted = [w.lower() for w in it.expand_list(p["mime_param"])]
            found = False
            for w in wanted:
                if w in params:
                    out.append(params[w])
                    found = True
            if not found:
                out.append("")
            continue
        if not valid:
            out.append("")
            continue
        if option == "contenttype":
            out.append(token)
        elif option == "type":
            out.append(token.split("/", 1)[0])
        else:
            out.append(token.split("/", 1)[1] if "/" in token else "")
    return out


def _valid_token(token, ctype):
    if not token:
        return False
    if ctype:
        main, slash, sub = token.partition("/")
        return bool(main and slash and sub)
    return True


HANDLERS.update({"foreverypart": run_foreverypart, "break": run_break,
                 "extracttext": run_extracttext})

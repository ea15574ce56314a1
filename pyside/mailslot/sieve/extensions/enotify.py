"""enotify (RFC 5435) with the mailto method (RFC 5436).

notify [:from a] [:importance "1"/"2"/"3"] [:options list] [:message s] <method>,
the valid_notify_method and notify_method_capability tests, and the :encodeurl
modifier for set. Only "mailto:" is a known method. The notification is decided
here (recipients, headers, body from the URI; subject from :message); sending
belongs to the delivery's outgoing mail.
"""

from .. import syntax as S
from ..address import AddressError, parse_sieve_address
from ..interpreter import HANDLERS, TESTS, SieveRunError
from ..diagnostics import sanitize
from ..match import match
from ..result import Action
from ..defs import CommandDef, TagDef, ValueTag
from .match_tags import link_match_tags, match_spec
from .variables_runtime import encode_url  # noqa: F401 (re-exported)

MAX_RECIPIENTS = 8
MAX_HEADERS = 16
_RESERVED = ("auto-submitted", "received", "message-id", "data", "bcc", "in-reply-to",
             "references", "resent-date", "resent-from", "resent-sender", "resent-to",
             "resent-cc", "resent-bcc", "resent-msg-id", "from", "sender")
_UNIQUE = ("reply-to",)
_QCHAR = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                   "-._~!$'()*+,;:@/?")


class MailtoError(ValueError):
    pass


def _pct_decode(text, allow_comma=True):
    data = bytearray()
    i = 0
    raw = text.encode("utf-8", "surrogateescape")
    while i < len(raw):
        c = raw[i]
        if c == 0x25:
            pair = raw[i + 1:i + 3]
            if len(pair) != 2 or not all(b in b"0123456789abcdefABCDEF" for b in pair) \
                    or int(pair, 16) == 0:
                raise MailtoError("invalid % encoding")
            data.append(int(pair, 16))
            i += 3
            continue
        data.append(c)
        i += 1
    return data.decode("utf-8", "replace")


def parse_mailto(uri):
    """mailto URI -> dict(recipients=[(full, cc, (local, domain))], headers, body,
    subject); raises MailtoError with Pigeonhole's wording."""
    if not uri[:7].lower() == "mailto:":
        raise MailtoError("invalid scheme")
    rest = uri[7:]
    to_part, _, query = rest.partition("?")
    recipients = []
    headers = []
    subject = body = None

    def add(full, cc):
        try:
            addr = parse_sieve_address(full)
        except AddressError as exc:
            raise MailtoError("invalid recipient '%s': %s" % (sanitize(full, 80), exc))
        for i, (f, c, a) in enumerate(recipients):
            if a[0] == addr[0] and a[1].lower() == addr[1].lower():
                recipients[i] = (f, c and cc, a)
                return
        if len(recipients) < MAX_RECIPIENTS:
            recipients.append((full, cc, addr))

    if to_part:
        current = []
        i = 0
        while i < len(to_part):
            ch = to_part[i]
            if ch == "%":
                pair = to_part[i + 1:i + 3]
                try:
                    value = chr(int(pair, 16)) if len(pair) == 2 else None
                except ValueError:
                    value = None
                if not value or value == "\0":
                    raise MailtoError("invalid % encoding")
                i += 3
                if value == ",":
                    add("".join(current), False)
                    current = []
                else:
                    current.append(value)
                continue
            if ch in ":;," or ch not in _QCHAR and not ord(ch) >= 0x80:
                raise MailtoError("invalid character '%s' in 'to' part" % ch)
            current.append(ch)
            i += 1
        add("".join(current), False)
    if query:
        for item in query.split("&"):
            name, eq, value = item.partition("=")
            if not eq:
                raise MailtoError("invalid header field name")
            for raw, part in ((name, "name"), (value, "value")):
                for ch in raw:
                    # RFC 6068 2: hfname and hfvalue are *qchar (or %XX).
                    if ch != "%" and ch not in _QCHAR and ord(ch) < 0x80:
                        raise MailtoError("invalid character '%s' in header field "
                                          "%s part" % (ch, part))
            name = _pct_decode(name)
            value = _pct_decode(value)
            low = name.lower()
            if not name or any(c in " :" for c in name):
                raise MailtoError("invalid header field name")
            if low == "to" or low == "cc":
                for full in value.split(","):
                    if full.strip():
                        add(full.strip(), low == "cc")
            elif low == "body":
                body = value
            elif low == "subject":
                if subject is None:
                    subject = value
            elif low in _RESERVED:
                continue
            elif low in _UNIQUE and any(n.lower() == low for n, _ in headers):
                continue
            elif len(headers) < MAX_HEADERS:
                headers.append((name, value))
    return {"recipients": recipients, "headers": headers, "body": body,
            "subject": subject}


class StringTag(ValueTag):
    """:from, :message, :options; the parameter is kept too (for its line)."""

    def accept(self, v, node, param, value):
        node.tags[self.identifier + "_arg"] = param
        return True


class ImportanceTag(TagDef):
    identifier = "importance"

    def validate(self, v, node, args, i):
        tag = args[i]
        param = args[i + 1] if i + 1 < len(args) else None
        if param is None or param.kind != S.STRING:
            v.error(param.line if param else tag.line,
                    "the :importance tag for the notify command requires a string "
                    "parameter, but %s was found" % (param.type_name() if param else "none"))
            return None
        if param.value not in ("1", "2", "3"):
            v.error(param.line, "invalid :importance value for notify command: %s"
                    % param.value)
            return None
        node.tags["importance"] = int(param.value)
        return i + 2


class Notify(CommandDef):
    name = "notify"
    positional = 1

    def registered(self, v, reg):
        v.register_tag(reg, StringTag("from"))
        v.register_tag(reg, StringTag("message"))
        v.register_tag(reg, ImportanceTag())
        v.register_tag(reg, StringTag("options", S.STRING_LIST))

    def validate(self, v, node):
        arg = node.positional[0]
        method = v.positional_value(node, arg, "method", 1, S.STRING)
        if method is None:
            return False
        if isinstance(method, str):
            scheme, colon, _ = method.partition(":")
            if not colon or not scheme or not scheme[0].isalpha():
                v.error(arg.line, "notify command: invalid scheme part for method URI "
                        "'%s'" % sanitize(method, 80))
                return False
            if scheme.lower() != "mailto":
                v.error(arg.line, "notify command: invalid method '%s'" % scheme)
                return False
            try:
                parse_mailto(method)
            except MailtoError as exc:
                v.error(arg.line, "notify command: mailto URI: %s" % exc)
                return False
            if node.tags.get("options") is not None and \
                    not _check_options(v, node, scheme.lower()):
                return False
        frm = node.tags.get("from")
        if isinstance(frm, str):
            try:
                parse_sieve_address(frm)
            except AddressError as exc:
                v.error(node.tags["from_arg"].line, "notify command: specified :from "
                        "address '%s' is invalid for the mailto method: %s"
                        % (sanitize(frm, 128), exc))
                return False
        node.data = {"method": method, "from": frm,
                     "importance": node.tags.get("importance", 2),
                     "options": node.tags.get("options"),
                     "message": node.tags.get("message")}
        return True

    def compile(self, c, node):
        return ("notify", node.line, node.data)


def _option_problem(option):
    """Why an :options item is not "<optionname>=<value>" (RFC 5435 3.4), or None.

    optionname = (ALPHA / DIGIT) *(ALPHA / DIGIT / "." / "-" / "_"); the value
    holds no CR or LF. The messages are Pigeonhole's (its value message does
    say "notify command:" twice).
    """
    if option == "":
        return "notify command: empty option specified"
    i = 0
    if option[0].isascii() and option[0].isalnum():
        i = 1
        while i < len(option) and option[i].isascii() and \
                (option[i].isalnum() or option[i] in ".-_"):
            i += 1
    if i == 0 or i >= len(option) or option[i] != "=":
        return ("notify command: invalid option name specified in option '%s'"
                % sanitize(option, 80))
    if "\n" in option or "\r" in option:
        return ("notify command: notify command: invalid option value specified in "
                "option '%s'" % sanitize(option, 80))
    return None


def _check_options(v, node, scheme):
    """Check literal :options items (the first bad one is reported); mailto
    takes no options, so good ones are dropped with a warning, as Pigeonhole."""
    arg = node.tags["options_arg"]
    values = node.tags["options"]
    for value, line in zip(values, arg.string_lines()):
        if not isinstance(value, str):
            continue    # a variable: checked when the notify runs
        problem = _option_problem(value)
        if problem:
            v.error(line, problem)
            return False
    v.warning(arg.line, "notify command: method '%s' accepts no options" % scheme)
    node.tags["options"] = None
    return True


class ValidNotifyMethod(CommandDef):
    name = "valid_notify_method"
    is_test = True
    positional = 1

    def validate(self, v, node):
        arg = node.positional[0]
        uris = v.positional_value(node, arg, "notification-uris", 1, S.STRING_LIST)
        if uris is None:
            return False
        node.data = uris
        return True

    def compile(self, c, node):
        return ("valid_notify_method", node.line, node.data)


class NotifyMethodCapability(CommandDef):
    name = "notify_method_capability"
    is_test = True
    positional = 3

    def registered(self, v, reg):
        link_match_tags(v, reg)

    def validate(self, v, node):
        a1, a2, a3 = node.positional
        if not v.check_positional(node, a1, "notification-uri", 1, S.STRING):
            return False
        if not v.check_positional(node, a2, "notification-capability", 2, S.STRING):
            return False
        if not v.check_positional(node, a3, "key-list", 3, S.STRING_LIST):
            return False
        uri = v.activate(node, a1)
        cap = v.activate(node, a2)
        keys = v.activate_list(node, a3)
        if uri is None or cap is None or keys is None:
            return False
        spec = match_spec(v, node, keys, a3)
        if spec is None:
            return False
        node.data = (uri, cap, keys, spec)
        return True

    def compile(self, c, node):
        return ("notify_method_capability", node.line) + node.data


def load(v, name):
    v.register_command(Notify(), name)
    v.register_command(ValidNotifyMethod(), name)
    v.register_command(NotifyMethodCapability(), name)
    v.ext_context.setdefault("modifiers", set()).add("encodeurl")
    return True


class NotifyAction(Action):
    kind = "notify"

    def __init__(self, location, method, uri, importance, message, from_, options):
        super().__init__(location)
        self.method = method
        self.uri = uri
        self.importance = importance
        self.message = message
        self.from_ = from_
        self.options = options

    def check_duplicate(self, result, other):
        # RFC 5435 3.9: the same recipients via the same method: one notification.
        if not isinstance(other, NotifyAction):
            return 0
        mine = {(a[0], a[1].lower()) for _, _, a in self.uri["recipients"]}
        theirs = {(a[0], a[1].lower()) for _, _, a in other.uri["recipients"]}
        if mine and mine <= theirs:
            return 1
        return 0

    def print_lines(self, result):
        u = self.uri
        out = [" * send notification with method 'mailto:':",
               "    => importance   : %d" % self.importance]
        if self.message is not None:
            out.append("    => subject      : %s" % self.message)
        elif u["subject"] is not None:
            out.append("    => subject      : %s" % u["subject"])
        if self.from_ is not None:
            out.append("    => from         : %s" % self.from_)
        out.append("    => recipients   :")
        if not u["recipients"]:
            out.append("       NONE, action has no effect")
        for full, cc, _ in u["recipients"]:
            out.append("       + %s: %s" % ("Cc" if cc else "To", full))
        if u["headers"]:
            out.append("    => headers      :")
            for name, value in u["headers"]:
                out.append("       + %s: %s" % (name, value))
        if u["body"] is not None:
            out.append("    => body         : \n--\n%s\n--" % u["body"])
        out.append("")
        return out, True

    def to_dict(self, result):
        u = self.uri
        return {"type": "notify", "method": self.method, "importance": self.importance,
                "message": self.message, "from": self.from_,
                "options": self.options,
                # "full": the recipient as the URI wrote it (display name too).
                "recipients": [{"address": "%s@%s" % a, "cc": cc, "full": full}
                               for full, cc, a in u["recipients"]],
                "headers": [list(h) for h in u["headers"]], "body": u["body"],
                "subject": self.message if self.message is not None else u["subject"]}


def run_notify(it, op):
    p = op[2]
    method = it.expand(p["method"])
    scheme = method.partition(":")[0]
    if ":" not in method or not scheme:
        raise SieveRunError("", "invalid scheme part for method URI '%s'"
                            % sanitize(method, 80))
    if scheme.lower() != "mailto":
        raise SieveRunError("", "invalid notify method '%s'" % scheme)
    try:
        uri = parse_mailto(method)
    except MailtoError as exc:
        raise SieveRunError("", "mailto URI: %s" % exc)
    frm = it.expand(p["from"]) if p["from"] is not None else None
    if frm is not None and p["from"] != frm:
        # A :from built from variables is checked when it is known, as Pigeonhole
        # does: an invalid one fails the script (implicit keep), and no
        # notification goes out from some other sender instead.
        try:
            parse_sieve_address(frm)
        except AddressError as exc:
            raise SieveRunError(it.location(), "notify_action: specified :from address '%s' is "
                                "invalid for the mailto method: %s"
                                % (sanitize(frm, 128), exc))
    message = it.expand(p["message"]) if p["message"] is not None else None
    # A copy: the action's options go to the host, and expand_list may hand back
    # the program's own list.
    options = list(it.expand_list(p["options"])) if p["options"] is not None else None
    action = NotifyAction(it.location(), "mailto", uri, p["importance"], message, frm,
                          options)
    it.result.add(it, action)


def test_valid(it, op):
    for uri in it.expand_list(op[2]):
        scheme = uri.partition(":")[0]
        if scheme.lower() != "mailto":
            return False
        try:
            parse_mailto(uri)
        except MailtoError:
            return False
    return True


def test_capability(it, op):
    uri, cap, keys, spec = it.expand(op[2]), it.expand(op[3]), op[4], op[5]
    if uri.partition(":")[0].lower() != "mailto":
        return False
    try:
        parse_mailto(uri)
    except MailtoError:
        return False
    values = ["maybe"] if cap.lower() == "online" else []
    return match(it, spec, values, it.expand_list(keys))


HANDLERS["notify"] = run_notify
TESTS["valid_notify_method"] = test_valid
TESTS["notify_method_capability"] = test_capability

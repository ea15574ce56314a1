"""vacation (RFC 5230) and vacation-seconds (RFC 6131): auto-replies, decided here.

vacation [:days n / :seconds n] [:subject s] [:from a] [:addresses list] [:mime]
[:handle h] <reason>. The period is clamped to sieve_vacation_min_period /
max_period with a warning, as Pigeonhole does; the default handle is the reason,
subject and from as written plus "<MIME>"/"<NO-MIME>".

The action is decided, not sent: decide() applies Pigeonhole's rules for when a
reply must not go out (null or own sender, mailing lists, Auto-Submitted,
Precedence bulk/junk/list, X-Auto-Response-Suppress, system addresses, the
user's address not in To/Cc/Bcc) and says whom to answer from what; sending
(and the duplicate database) belong to the delivery's outgoing mail.
"""

from .. import syntax as S
from ..address import AddressError, parse_address_list, parse_sieve_address, smtp_encode
from ..interpreter import HANDLERS
from ..diagnostics import sanitize
from ..result import SENDS_RESPONSE, Action
from ..interpreter import SieveRunError
from ..defs import CommandDef, TagDef, ValueTag

OPT_SECONDS = 11


class PeriodTag(TagDef):
    id_code = OPT_SECONDS

    def __init__(self, ident):
        self.identifier = ident

    def validate(self, v, node, args, i):
        tag = args[i]
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, tag, param, None, 0, S.NUMBER):
            return None
        period = param.value
        seconds = period * 86400 if self.identifier == "days" else period
        lo = v.env.settings.get("vacation_min_period", 86400)
        hi = v.env.settings.get("vacation_max_period", 0)
        if seconds < lo:
            seconds = lo
            v.warning(param.line, "specified :%s value '%d' is under the minimum"
                      % (self.identifier, period))
        elif hi > 0 and seconds > hi:
            seconds = hi
            v.warning(param.line, "specified :%s value '%d' is over the maximum"
                      % (self.identifier, period))
        node.tags["seconds"] = int(seconds)
        return i + 2


class StringTag(ValueTag):
    """:subject, :from, :addresses, :handle. :from must be an address; :subject and
    :from are also kept without variable substitution (their _raw form)."""

    def accept(self, v, node, param, value):
        if self.identifier == "from" and isinstance(value, str):
            try:
                parse_sieve_address(value)
            except AddressError as exc:
                v.error(param.line, "specified :from address '%s' is invalid for "
                        "vacation action: %s" % (sanitize(value, 128), exc))
                return False
        if self.identifier in ("subject", "from"):
            node.tags[self.identifier + "_raw"] = v.compile_string(
                param.value, param.line, constant=True)
        return True


class MimeTag(TagDef):
    identifier = "mime"

    def validate(self, v, node, args, i):
        node.tags["mime"] = True
        return i + 1


class Vacation(CommandDef):
    name = "vacation"
    positional = 1

    def registered(self, v, reg):
        v.register_tag(reg, PeriodTag("days"))
        v.register_tag(reg, StringTag("subject"))
        v.register_tag(reg, StringTag("from"))
        v.register_tag(reg, StringTag("addresses", S.STRING_LIST))
        v.register_tag(reg, MimeTag())
        v.register_tag(reg, StringTag("handle"))

    def validate(self, v, node):
        arg = node.positional[0]
        reason = v.positional_value(node, arg, "reason", 1, S.STRING)
        if reason is None:
            return False
        tags = node.tags
        handle = tags.get("handle")
        if handle is None:
            raw = v.compile_string(arg.value, arg.line, constant=True)
            handle = raw + (tags.get("subject_raw") if "subject" in tags
                            else "<default-subject>") \
                + (tags.get("from_raw") if "from" in tags else "<default-from>") \
                + ("<MIME>" if tags.get("mime") else "<NO-MIME>")
        node.data = {"reason": reason, "handle": handle,
                     "seconds": tags.get("seconds"),
                     "subject": tags.get("subject"), "from": tags.get("from"),
                     "addresses": tags.get("addresses"),
                     "mime": bool(tags.get("mime"))}
        return True

    def compile(self, c, node):
        return ("vacation", node.line, node.data)


def load(v, name):
    if name == "vacation-seconds":
        if not v.extension_loaded("vacation"):
            v.load_extension("vacation", None, None, required=False)
        v.register_external_tag("vacation", PeriodTag("seconds"))
        return True
    v.register_command(Vacation(), name)
    return True


class VacationAction(Action):
    kind = "vacation"
    flags = SENDS_RESPONSE

    def __init__(self, location, reason, handle, seconds, subject, from_, addresses,
                 mime, from_address):
        super().__init__(location)
        self.reason = reason
        self.handle = handle
        self.seconds = seconds
        self.subject = subject
        self.from_ = from_
        self.addresses = addresses
        self.mime = mime
        self.from_address = from_address
        self.decision = None

    def check_duplicate(self, result, other):
        if not result.is_executed(other):
            raise SieveRunError(self.location,
                                "duplicate vacation action not allowed (previously "
                                "triggered one was here: %s)" % other.location)
        return 1

    def check_conflict(self, result, other):
        if other.flags & SENDS_RESPONSE:
            if not result.is_executed(other):
                raise SieveRunError(self.location,
                                    "vacation action conflicts with other action: the "
                                    "%s action (%s) also sends a response back to the "
                                    "sender" % (other.kind, other.location))
            return 1
        return 0

    def print_lines(self, result):
        lines = [" * send vacation message:", "    => seconds : %d" % self.seconds]
        if self.subject is not None:
            lines.append("    => subject : %s" % self.subject)
        if self.from_ is not None:
            lines.append("    => from    : %s" % self.from_)
        if self.handle is not None:
            lines.append("    => handle  : %s" % self.handle)
        lines.append("\nSTART MESSAGE\n%s\nEND MESSAGE" % self.reason)
        return lines, True

    def to_dict(self, result):
        d = {"type": "vacation", "reason": self.reason, "handle": self.handle,
             "seconds": self.seconds, "subject": self.subject, "from": self.from_,
             "addresses": [smtp_encode(a, b) for a, b in self.addresses],
             "mime": self.mime}
        if self.decision is not None:
            d.update(self.decision)
        return d


def run_vacation(it, op):
    p = op[2]
    ctx = it.ctx
    reason = it.expand(p["reason"])
    handle = it.expand(p["handle"])
    seconds = p["seconds"]
    if seconds is None:
        seconds = int(ctx.settings.vacation_default_period)
    # why: the validator clamped a literal period, but a compiled program may come
    # from a cache its user wrote (cache.py); the administrator's bounds hold here.
    lo, hi = ctx.settings.vacation_min_period, ctx.settings.vacation_max_period
    if not isinstance(seconds, int) or seconds < lo:
        seconds = int(lo)
    elif hi > 0 and seconds > hi:
        seconds = int(hi)
    subject = it.expand(p["subject"]) if p["subject"] is not None else None
    from_ = it.expand(p["from"]) if p["from"] is not None else None
    from_address = None
    if from_ is not None:
        try:
            from_address = parse_sieve_address(from_)
        except AddressError as exc:
            ctx.diag.error("", "specified :from address '%s' is invalid for "
                           "vacation action: %s" % (sanitize(from_, 128), exc))
    addresses = []
    if p["addresses"] is not None:
        for raw in it.expand_list(p["addresses"]):
            try:
                addresses.append(parse_sieve_address(raw))
            except AddressError as exc:
                ctx.diag.error("", "specified :addresses item '%s' is "
                               "invalid: %s for vacation action (ignored)"
                               % (sanitize(raw, 128), exc))
    action = VacationAction(it.location(), reason, handle, seconds, subject, from_,
                            addresses, p["mime"], from_address)
    action.decision = decide(ctx, action)
    it.result.add(it, action)


# -- the decision ---------------------------------------------------------------------

_LIST_HEADERS = ("list-id", "list-owner", "list-subscribe", "list-post",
                 "list-unsubscribe", "list-help", "list-archive")
_MY_HEADERS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")


def _is_system(local):
    low = local.lower()
    return low in ("mailer-daemon", "listserv", "majordomo") or "-request" in low or \
        low.startswith("owner-")


def _eq(a_local, a_domain, b_local, b_domain):
    return (a_local or "").lower() == (b_local or "").lower() and \
        (a_domain or "").lower() == (b_domain or "").lower()


def _headers_contain(values, local, domain):
    for value in values:
        for item in parse_address_list(value):
            if item is not None and item.domain is not None and \
                    _eq(item.localpart, item.domain, local, domain):
                return True
    return False


ELLIPSIS = "\u2026"


def _default_subject(s, subjects):
    """The reply's subject without :subject, as Pigeonhole picks it: without an
    original Subject sieve_vacation_default_subject (or "Automated reply"); with
    one sieve_vacation_default_subject_template ("%$" or "%{subject}" is the
    original's, "%%" a percent sign), else "Auto: " and the original's."""
    if not subjects:
        return s.vacation_default_subject or "Automated reply"
    template = s.vacation_default_subject_template
    if not template:
        return "Auto: " + subjects[0]
    out = []
    i = 0
    while i < len(template):
        if template.startswith("%$", i):
            out.append(subjects[0])
            i += 2
        elif template.startswith("%{subject}", i):
            out.append(subjects[0])
            i += len("%{subject}")
        elif template.startswith("%%", i):
            out.append("%")
            i += 2
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


def _limit_codepoints(text, limit):
    """sieve_vacation_max_subject_codepoints: a longer subject is cut and ends in
    an ellipsis (Dovecot's str_sanitize_utf8)."""
    limit = int(limit or 0)
    if limit > 0 and len(text) > limit:
        return text[:limit - 1] + ELLIPSIS
    return text


def decide(ctx, action):
    """Whether and how the reply goes out (Pigeonhole's act_vacation_commit)."""
    env = ctx.envelope
    s = ctx.settings
    view = ctx.message
    sender = env.sender
    recipient = env.recipient
    out = {"send": False}

    def no(why):
        out["skip_reason"] = why
        return out

    if recipient is None or recipient.localpart is None:
        return no("vacation action aborted: envelope recipient is <>")
    if sender is None or sender.localpart is None:
        return no("discarded vacation reply to <>")
    if _eq(sender.localpart, sender.domain, recipient.localpart, recipient.domain):
        return no("discarded vacation reply to own address <%s>"
                  % smtp_encode(sender.localpart, sender.domain))
    for local, domain in action.addresses:
        if _eq(sender.localpart, sender.domain, local, domain):
            return no("discarded vacation reply to own address <%s> (as specified "
                      "using :addresses argument)"
                      % smtp_encode(sender.localpart, sender.domain))
    sender_text = smtp_encode(sender.localpart, sender.domain)
    for name in _LIST_HEADERS:
        if view.header_values(name):
            return no("discarding vacation response to mailinglist recipient <%s>"
                      % sender_text)
    for value in view.header_values("auto-submitted"):
        if value.strip().lower() != "no":
            return no("discarding vacation response to auto-submitted message from "
                      "<%s>" % sender_text)
    for value in view.header_values("precedence"):
        if value.strip().lower() in ("junk", "bulk", "list"):
            return no("discarding vacation response to precedence=%s message from <%s>"
                      % (value.strip(), sender_text))
    for value in view.header_values("x-auto-response-suppress"):
        for flag in value.split(","):
            if flag.strip().lower() in ("all", "oof"):
                return no("discarding vacation response to message from <%s> (`%s' "
                          "flag found in x-auto-response-suppress header)"
                          % (sender_text, flag.strip()))
    if _is_system(sender.localpart):
        return no("not sending vacation response to system address <%s>" % sender_text)
    orig = env.orig_recipient if s.vacation_use_original_recipient else None
    user_email = None
    if s.user_email:
        try:
            user_email = parse_sieve_address(s.user_email)
        except AddressError:
            user_email = None
    smtp_from = reply_from = None
    for name in _MY_HEADERS:
        values = view.header_values(name)
        if not values:
            continue
        if _headers_contain(values, recipient.localpart, recipient.domain):
            smtp_from = reply_from = (recipient.localpart, recipient.domain)
            break
        if orig is not None and _headers_contain(values, orig.localpart, orig.domain):
            smtp_from = reply_from = (orig.localpart, orig.domain)
            break
        found = None
        for local, domain in action.addresses:
            if _headers_contain(values, local, domain):
                found = (local, domain)
                break
        if found:
            base = orig or recipient
            smtp_from, reply_from = (base.localpart, base.domain), found
            break
        if user_email and _headers_contain(values, *user_email):
            smtp_from = reply_from = user_email
            break
    if smtp_from is None:
        if s.vacation_dont_check_recipient:
            base = orig or recipient
            smtp_from = (base.localpart, base.domain)
            reply_from = user_email or smtp_from
        else:
            return no("discarding vacation response for implicitly delivered message; "
                      "no known (envelope) recipient address found in message headers "
                      "(recipient=<%s>, and%s additional `:addresses' are specified)"
                      % (smtp_encode(recipient.localpart, recipient.domain),
                         "" if action.addresses else " no"))
    subject = action.subject
    if not subject:
        subject = _default_subject(s, view.decoded_values("subject"))
    subject = _limit_codepoints(subject, s.vacation_max_subject_codepoints)
    out.update({
        "send": True,
        "to": sender_text,
        "envelope_from": smtp_encode(*smtp_from) if s.vacation_send_from_recipient
        else "",
        "reply_from": action.from_ if action.from_ else smtp_encode(*reply_from),
        "reply_subject": subject,
        "to_header_ignore_envelope": bool(s.vacation_to_header_ignore_envelope),
        "duplicate_id": (action.handle, sender_text),
        "period": action.seconds,
        "in_reply_to": (view.header_values("message-id") or [None])[0],
        "references": (view.header_values("references") or [None])[0],
    })
    return out


HANDLERS["vacation"] = run_vacation

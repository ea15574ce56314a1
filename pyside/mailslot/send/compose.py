"""The messages mailslot writes: rejection (MDN), DSN, vacation reply, notification.

Each builder returns an Outgoing: the envelope (sender, "" for <>; recipients), the
whole message as bytes (LF line endings; small: at most the original's header
block plus what a script or the settings wrote) and a short description for logs.

    rejection(original, reason=..., final_rcpt=..., orig_rcpt=..., ...)
        Sieve reject, as Dovecot's LDA sends it: multipart/report;
        report-type=disposition-notification (RFC 8098): a text/plain part from the
        rejection_reason template, a message/disposition-notification part
        (Reporting-UA, Original-Recipient when the original recipient differs,
        Final-Recipient, Original-Message-ID, Disposition:
        automatic-action/MDN-sent-automatically; deleted) and the original header
        block as message/rfc822; Subject from rejection_subject; Auto-Submitted:
        auto-replied (rejected); From the postmaster; envelope sender <>.
    dsn(original, status="5.2.2", ...)
        A failure DSN (RFC 3461-3464), the over-quota rejection as dovecot-lda
        sends it: the rejection's header and templates, report-type=delivery-status
        with the per-message and per-recipient fields and text/rfc822-headers.
    vacation_reply(original, decision, action, ...)
        RFC 5230 / 3834: Auto-Submitted: auto-replied (vacation), In-Reply-To,
        References, Subject "Auto: ..." with encoded words, a :mime body.
    notification(original, action, ...)
        RFC 5436 mailto: Auto-Submitted: auto-notified; owner-email=..., the URI's
        headers and body, :importance as X-Priority / Importance.

Templates (rejection_subject, rejection_reason) take %n (newline), %r (reason),
%s (the original subject), %t (the recipient), %% and the long forms %{reason}
...; a substituted value is never expanded again.

Errors: none for any input; what may not be sent is decided in send/outgoing.py.

Security: every header value goes through headers.field (no line breaks); a :mime
body's own header lines are limited to Content-* fields, so a script cannot add
recipients or other headers through it; an original header block is attached,
never parsed into new headers.
"""

from . import headers as H

# Dovecot's defaults (lda-settings.c).
DEFAULT_REJECTION_SUBJECT = "Rejected: %s"
DEFAULT_REJECTION_REASON = "Your message to <%t> was automatically rejected:%n%r"
# A DSN or MDN returns at most this much of the original header block.
MAX_RETURNED_HEADER = 64 * 1024
_TEMPLATE_LONG = {"n": "crlf", "r": "reason", "s": "subject", "t": "to"}


class Outgoing:
    """One message to send: envelope sender ("" = <>), recipients, bytes."""

    __slots__ = ("sender", "recipients", "data", "kind", "describe")

    def __init__(self, sender, recipients, data, kind, describe):
        self.sender = sender
        self.recipients = list(recipients)
        self.data = data
        self.kind = kind
        self.describe = describe


class Original:
    """What the builders need of the message being delivered."""

    def __init__(self, fields, header_block):
        self.fields = list(fields)                 # [(name, value)], unfolded
        end = header_block.find(b"\n\n")
        if end >= 0:
            header_block = header_block[:end + 1]
        self.header_block = header_block[:MAX_RETURNED_HEADER]

    @classmethod
    def from_message(cls, message):
        """From an engine Message (or anything with header_fields/read_bytes)."""
        fields = message.header_fields()
        block = None
        head = getattr(message, "header_buffer", None)   # the engine's Message/view
        if callable(head):
            buffer, end = head()
            block = bytes(buffer[:min(end, MAX_RETURNED_HEADER)])
        if block is None:
            # Rebuilt from the parsed fields (bounded): never the whole message.
            block = b"".join(("%s: %s\n" % (n, v)).encode("utf-8", "surrogateescape")
                             for n, v in fields)
        return cls(fields, block)

    def values(self, name):
        low = name.lower()
        return [v for n, v in self.fields if n.lower() == low]

    def first(self, name):
        values = self.values(name)
        return values[0].strip() if values else ""

    def decoded(self, name):
        value = self.first(name)
        if "=?" in value:
            from ..sieve.mail import decode_words
            return decode_words(value)
        return value


def expand_template(template, values):
    """Dovecot-style %x / %{name} expansion; unknown variables stay as written."""
    out = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch != "%" or i + 1 >= len(template):
            out.append(ch)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "%":
            out.append("%")
            i += 2
            continue
        if nxt == "{":
            end = template.find("}", i + 2)
            name = template[i + 2:end] if end > 0 else None
            if name is not None and name in values:
                out.append(values[name])
                i = end + 1
                continue
        elif nxt in _TEMPLATE_LONG:
            out.append(values[_TEMPLATE_LONG[nxt]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _boundary(hostname):
    import os
    return "%d-%s/%s" % (os.getpid(), os.urandom(4).hex(), H.clean(hostname) or "localhost")


def _returned_header(original):
    block = original.header_block
    return block if block.endswith(b"\n") or not block else block + b"\n"


def _rejection_texts(original, reason, to_addr, subject_template, reason_template):
    """The rejection's Subject and human-readable text from rejection_subject and
    rejection_reason (%n the line break, %r the reason, %s the subject, %t the
    recipient), shared by the Sieve reject MDN and the quota DSN."""
    values = {"crlf": "\n", "reason": reason, "subject": original.decoded("subject"),
              "to": to_addr}
    return (expand_template(subject_template or DEFAULT_REJECTION_SUBJECT, values),
            expand_template(reason_template or DEFAULT_REJECTION_REASON, values))


def _rejection_head(report_type, boundary, subject, *, sender, hostname, postmaster, now,
                    postmaster_name=""):
    """The header of a multipart/report rejection: from the postmaster (named
    "Postmaster" unless postmaster_address gave a name) to the sender,
    Auto-Submitted: auto-replied (rejected), Precedence: bulk, as Dovecot sends it."""
    return b"".join([
        H.field("Message-ID", H.message_id(hostname, now)),
        H.field("Date", H.date(now)),
        H.field("From", H.mailbox(postmaster_name or "Postmaster", postmaster)),
        H.field("To", "<%s>" % H.clean(sender)),
        H.field("MIME-Version", "1.0"),
        H.field("Content-Type", 'multipart/report; report-type=%s; boundary="%s"'
                % (report_type, boundary)),
        H.field("Subject", H.unstructured(subject)),
        H.field("Auto-Submitted", "auto-replied (rejected)"),
        H.field("Precedence", "bulk"),
    ])


def _report_body(boundary, text, report_type, report, returned_type, original):
    """The body of a multipart/report rejection (RFC 6522), shared by the reject MDN
    and the quota DSN: the human-readable text, the machine-readable report (its
    fields as bytes, report_type its Content-Type) and the original's header block
    as returned_type: message/rfc822 (a message with an empty body: a blank line
    ends its header) or text/rfc822-headers (the header lines only)."""
    b = boundary.encode("utf-8")
    returned = _returned_header(original)
    if returned_type == "message/rfc822":
        returned += b"\n"
    return b"".join([
        b"\nThis is a MIME-encapsulated message\n\n",
        b"--" + b + b"\n",
        b"Content-Type: text/plain; charset=utf-8\n",
        b"Content-Disposition: inline\n",
        b"Content-Transfer-Encoding: 8bit\n\n",
        _body_text(text),
        b"--" + b + b"\n",
        b"Content-Type: " + report_type.encode("ascii") + b"\n\n",
        report, b"\n",
        b"--" + b + b"\n",
        b"Content-Type: " + returned_type.encode("ascii") + b"\n\n",
        returned, b"\n",
        b"--" + b + b"--\n",
    ])


def rejection(original, *, reason, final_rcpt, orig_rcpt, sender, hostname,
              postmaster, now, subject_template=None, reason_template=None,
              reporting_ua="Mail Delivery Agent", postmaster_name=""):
    """The Sieve reject MDN (see the module docstring)."""
    to_addr = orig_rcpt or final_rcpt
    subject, text = _rejection_texts(original, reason, to_addr, subject_template,
                                     reason_template)
    boundary = _boundary(hostname)
    head = _rejection_head("disposition-notification", boundary, subject, sender=sender,
                           hostname=hostname, postmaster=postmaster, now=now,
                           postmaster_name=postmaster_name)
    report = [H.field("Reporting-UA", "%s; %s" % (hostname, reporting_ua))]
    if orig_rcpt and final_rcpt and orig_rcpt.lower() != final_rcpt.lower():
        report.append(H.field("Original-Recipient", "rfc822; %s" % orig_rcpt))
    report.append(H.field("Final-Recipient", "rfc822; %s" % (final_rcpt or to_addr)))
    msgid = original.first("message-id")
    if msgid:
        report.append(H.field("Original-Message-ID", msgid))
    report.append(H.field("Disposition",
                          "automatic-action/MDN-sent-automatically; deleted"))
    body = _report_body(boundary, text, "message/disposition-notification",
                        b"".join(report), "message/rfc822", original)
    return Outgoing("", [sender], head + body, "rejection",
                    "rejection to <%s>" % sender)


def dsn(original, *, status, diagnostic, final_rcpt, orig_rcpt, sender, hostname,
        postmaster, now, subject_template=None, reason_template=None,
        postmaster_name=""):
    """A failure DSN for one recipient: the over-quota rejection as dovecot-lda
    sends it (its lda "dsn" form): the rejection's header (From Postmaster, Subject
    from rejection_subject, Auto-Submitted: auto-replied (rejected), Precedence:
    bulk) and text (rejection_reason, %r the diagnostic), with report-type
    delivery-status. The status part follows RFC 3464 (per-message fields, a blank
    line, then the recipient's: Final-Recipient, Action: failed, Status), where
    Dovecot writes one block, and the original header is text/rfc822-headers
    (RFC 3462) where Dovecot labels it message/rfc822."""
    to_addr = orig_rcpt or final_rcpt
    subject, human = _rejection_texts(original, diagnostic, to_addr, subject_template,
                                      reason_template)
    boundary = _boundary(hostname)
    head = _rejection_head("delivery-status", boundary, subject, sender=sender,
                           hostname=hostname, postmaster=postmaster, now=now,
                           postmaster_name=postmaster_name)
    per_message = [H.field("Reporting-MTA", "dns; %s" % hostname),
                   H.field("Arrival-Date", H.date(now))]
    per_rcpt = []
    if orig_rcpt and orig_rcpt.lower() != (final_rcpt or "").lower():
        per_rcpt.append(H.field("Original-Recipient", "rfc822; %s" % orig_rcpt))
    per_rcpt += [H.field("Final-Recipient", "rfc822; %s" % (final_rcpt or orig_rcpt)),
                 H.field("Action", "failed"),
                 H.field("Status", status),
                 H.field("Diagnostic-Code", "x-mailslot; %s" % diagnostic)]
    body = _report_body(boundary, human, "message/delivery-status",
                        b"".join(per_message) + b"\n" + b"".join(per_rcpt),
                        "text/rfc822-headers", original)
    return Outgoing("", [sender], head + body, "dsn", "DSN %s to <%s>" % (status, sender))


def _body_text(text):
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8", "replace")
    return data if data.endswith(b"\n") else data + b"\n"


def _reply_to_mailbox(original, address, ignore_envelope=False):
    """The reply's To: the first mailbox of Sender, Resent-From or From (the first
    field of each, in that order) that is the envelope sender's address -- or,
    with sieve_vacation_to_header_ignore_envelope, any -- with its display name,
    as Pigeonhole writes it; else <address>."""
    from email.utils import getaddresses
    for header in ("sender", "resent-from", "from"):
        values = original.values(header)
        if not values:
            continue
        for name, addr in getaddresses(values[:1]):
            if "@" not in addr:
                continue
            if ignore_envelope or addr.lower() == address.lower():
                if "=?" in name:
                    from ..sieve.mail import decode_words
                    name = decode_words(name)
                return H.mailbox(name, addr)
    return "<%s>" % H.clean(address)


def _from_mailbox(text):
    """A :from value ("Name <a@b>" or "a@b"), validated by Sieve, re-rendered."""
    from email.utils import parseaddr
    text = H.clean(text).strip()
    if "<" in text and text.endswith(">"):
        # "Name <a@b>" as the script wrote it, as Pigeonhole sends it (also a
        # name with an unquoted comma, which parseaddr would cut at the comma).
        return text
    name, addr = parseaddr(text)
    if not addr or "@" not in addr:
        return "<%s>" % text.strip("<> ")
    return "<%s>" % addr


def vacation_reply(original, decision, action, *, hostname, now, max_subject=256):
    """The vacation reply for a decision from sieve/extensions/vacation.decide()."""
    subject = decision.get("reply_subject") or "Automated reply"
    if len(subject) > max_subject:
        subject = subject[:max_subject]
    to = decision["to"]
    msgid = decision.get("in_reply_to") or original.first("message-id")
    head = [
        H.x_sieve(),
        H.field("Message-ID", H.message_id(hostname, now)),
        H.field("Date", H.date(now)),
        H.field("From", _from_mailbox(decision["reply_from"])),
        H.field("To", _reply_to_mailbox(original, to,
                                        decision.get("to_header_ignore_envelope"))),
        H.field("Subject", H.unstructured(subject)),
    ]
    if msgid:
        head.append(H.field("In-Reply-To", msgid))
        head.append(H.field("References", H.references(decision.get("references"),
                                                       msgid)))
    head += [
        H.field("Auto-Submitted", "auto-replied (vacation)"),
        H.field("Precedence", "bulk"),
        H.field("X-Auto-Response-Suppress", "All"),
        H.field("MIME-Version", "1.0"),
    ]
    reason = action.get("reason") or ""
    if action.get("mime"):
        entity_head, body = _mime_entity(reason)
        data = b"".join(head) + entity_head + b"\n" + body
    else:
        data = b"".join(head) + b"".join([
            H.field("Content-Type", "text/plain; charset=utf-8"),
            H.field("Content-Transfer-Encoding", "8bit"),
            b"\n", _body_text(reason)])
    return Outgoing(decision.get("envelope_from") or "", [to], data, "vacation",
                    "vacation response to <%s>" % to)


def _mime_entity(text):
    """Split a :mime reason into its Content-* header lines and its body."""
    text = text.replace("\r\n", "\n")
    end = text.find("\n\n")
    if end < 0:
        head_text, body = text, ""
    else:
        head_text, body = text[:end], text[end + 2:]
    fields = []
    for line in head_text.split("\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += " " + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append([name.strip(), value.strip()])
    out = [H.field(n, v) for n, v in fields
           if n.lower().startswith("content-") and n.isascii() and n.replace("-", "").isalnum()]
    if not any(n.lower() == "content-type" for n, _ in fields):
        out.insert(0, H.field("Content-Type", "text/plain; charset=utf-8"))
    return b"".join(out), _body_text(body)


# RFC 5435 3.6 :importance -> X-Priority / Importance, as Pigeonhole writes them.
_IMPORTANCE = {1: ("1 (Highest)", "High"), 2: ("3 (Normal)", "Normal"),
               3: ("5 (Lowest)", "Low")}


def notification(original, action, *, owner, postmaster, hostname, now,
                 postmaster_name=""):
    """An enotify mailto notification (RFC 5436) for a notify action dict."""
    recipients = [r["address"] for r in action.get("recipients") or ()]
    subject = action.get("subject")
    if subject is None:
        subj = original.decoded("subject")
        subject = "Notification: " + subj if subj else "Notification of new message"
    frm = action.get("from")
    from email.utils import parseaddr
    from_addr = parseaddr(H.clean(frm))[1] if frm else ""
    if "@" not in from_addr:
        frm, from_addr = None, ""      # no usable :from (a variable made it invalid)
    head = [
        H.x_sieve(),
        H.field("Message-ID", H.message_id(hostname, now)),
        H.field("Date", H.date(now)),
        H.field("Subject", H.unstructured(subject)),
        # :from as the script wrote it (Pigeonhole does the same), one line.
        H.field("From", frm if frm else H.mailbox(postmaster_name or "Postmaster",
                                                  postmaster)),
    ]
    # The To and Cc fields name the recipients as the URI did, display names
    # and encoded words included (Pigeonhole's does); the envelope has bare
    # addresses. A "full" form is a parsed, validated mailbox (enotify.py).
    to = [r.get("full") or r["address"] for r in action.get("recipients") or ()
          if not r.get("cc")]
    cc = [r.get("full") or r["address"] for r in action.get("recipients") or ()
          if r.get("cc")]
    if to:
        head.append(H.field("To", ", ".join(to)))
    if cc:
        head.append(H.field("Cc", ", ".join(cc)))
    for name, value in action.get("headers") or ():
        if name.isascii() and name.replace("-", "").isalnum():
            head.append(H.field(name, H.unstructured(value)))
    head += [H.field("Auto-Submitted", 'auto-notified; owner-email="%s"'
                     % H.clean(owner).replace('"', "")),
             H.field("Precedence", "bulk")]
    importance = _IMPORTANCE.get(action.get("importance") or 2)
    if importance:
        head += [H.field("X-Priority", importance[0]), H.field("Importance", importance[1])]
    body = action.get("body")
    if body is None:
        body = "Notification of new message."
    ascii_body = body.isascii()
    head += [H.field("MIME-Version", "1.0"),
             H.field("Content-Type", "text/plain; charset=%s"
                     % ("US-ASCII" if ascii_body else "utf-8")),
             H.field("Content-Transfer-Encoding", "7bit" if ascii_body else "8bit")]
    sender = from_addr or postmaster
    return Outgoing(sender, recipients, b"".join(head) + b"\n" + _body_text(body),
                    "notification", "mail notification to %s"
                    % ", ".join("<%s>" % r for r in recipients))

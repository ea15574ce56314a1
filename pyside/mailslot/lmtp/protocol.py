"""LMTP (RFC 2033) as a pure state machine: bytes in, replies and requests out.

    session = Session(Limits(hostname="mx.example.org"), open_sink)
    out = session.greeting()                  # [Reply]
    out = session.feed(data)                  # [Reply | VerifyRecipient | Deliver | Close]
    out = session.answer(result)              # after a VerifyRecipient or a Deliver

The session never touches a socket, a file or a user database: the server (server.py)
reads bytes, feeds them, writes the Reply events, and answers the two requests the
session makes of it -- "may this recipient receive mail?" (VerifyRecipient: the userdb,
quota) and "file this message for these recipients" (Deliver: the delivery core). While
a request is open the session takes no more input; the server stops reading the socket,
so a pipelining client is held back by TCP, not buffered here.

The protocol is RFC 5321 with RFC 2033's changes: LHLO instead of EHLO/HELO (both
refused), and after the end of the message (DATA's "." or BDAT LAST) exactly one reply
per accepted recipient, in RCPT order, on every path: delivered, failed, over-size,
over-long line or an internal error. The extensions advertised and honoured:
PIPELINING (RFC 2920: commands are processed one after another from whatever arrived;
replies are batched by the server), ENHANCEDSTATUSCODES (RFC 2034: every reply but the
greeting and LHLO's carries one), 8BITMIME (RFC 6152: BODY=7BIT/8BITMIME; the content
is stored as sent), SIZE (RFC 1870: SIZE= refused above the limit at MAIL, the message
counted while it arrives), CHUNKING (RFC 3030: BDAT), SMTPUTF8 (RFC 6531: UTF-8
addresses only in a transaction whose MAIL carried SMTPUTF8).

The message content goes to a sink from open_sink() (the server's spool file) as it
arrives, with dot-unstuffing (RFC 5321 4.5.2) and CRLF turned into LF (what the
mailbox formats store, as Dovecot with mail_save_crlf=no); Deliver carries the sink.
Memory is bounded whatever the input: a command line is cut at MAX_COMMAND_LINE, the
content is never held beyond one read, a line of the content longer than
MAX_TEXT_LINE (RFC 5321 4.5.3.1.6) fails the message, and content past the size
limit is read and dropped, never stored.

Errors: a protocol error is a reply (5xx for the client's mistakes, RFC 5321 4.2);
the session raises nothing for any input. Too many errors in a row close the session.

Security: every byte is the client's. Addresses are checked for RFC 5321 syntax and
length (4.5.3.1) and are data: the server uses them only as userdb keys and in
replies, where no CR, LF or other control character can appear (they are refused
here). The end-of-data sequence is exactly CRLF "." CRLF: a bare LF never ends a
line for the terminator, so "\\n.\\n" or "\\n.\\r\\n" cannot smuggle a second message
(the SMTP smuggling attacks of 2023).
"""

# RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF; RFC 1869 lets
# each extension's parameters add to it (SIZE= 26, BODY= 14, SMTPUTF8 9): 1024 holds
# every command this server accepts with room, and bounds what is buffered.
MAX_COMMAND_LINE = 1024
# RFC 5321 4.5.3.1.6: a line of the message text is at most 1000 octets with its CRLF.
MAX_TEXT_LINE = 1000
# RFC 5321 4.5.3.1.3: a path (with its angle brackets) is at most 256 octets.
MAX_PATH = 256
# RFC 5321 4.5.3.1.8 asks for at least 100 recipients per transaction; beyond
# MAX_RECIPIENTS: 452 4.5.3 (RFC 5321 4.5.3.1.10), the client sends the rest later.
MAX_RECIPIENTS = 1000
# RFC 3461 4.2: the ORCPT parameter's value is at most 500 characters.
MAX_ORCPT = 500
# Bad commands in a row before the session is closed (421): a confused or hostile
# client is not served forever.
MAX_ERRORS = 20

CRLF = b"\r\n"

# Session states.
INITIAL, READY, DATA, BDAT, CLOSED = "initial", "ready", "data", "bdat", "closed"


class Limits:
    """What a session advertises and enforces."""

    def __init__(self, hostname="localhost", max_size=0, max_text_line=MAX_TEXT_LINE,
                 max_recipients=MAX_RECIPIENTS, greeting="mailslot LMTP ready"):
        self.hostname = hostname
        self.max_size = max_size            # octets; 0: no limit (SIZE 0, RFC 1870)
        self.max_text_line = max_text_line
        self.max_recipients = max_recipients
        self.greeting = greeting


# -- what the session hands to the server ---------------------------------------------

class Reply:
    """Bytes to write to the client (one or more complete reply lines)."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    def __repr__(self):
        return f"Reply({self.data!r})"


class VerifyRecipient:
    """Request: may address receive mail? Answer with session.answer(Verdict).
    original: the RCPT's ORCPT address (RFC 3461, type rfc822, decoded) or None."""

    __slots__ = ("address", "transaction", "original")

    def __init__(self, address, transaction, original=None):
        self.address, self.transaction, self.original = address, transaction, original


class Deliver:
    """Request: file transaction's message for its recipients. Answer with
    session.answer([reply text per recipient, in order]): each a complete reply
    line without CRLF, e.g. "250 2.0.0 <bob@example.org> Saved"."""

    __slots__ = ("transaction",)

    def __init__(self, transaction):
        self.transaction = transaction


class Discard:
    """The transaction's sink will not be delivered (a failed message, RSET, QUIT
    or a lost connection mid-message): the server closes it."""

    __slots__ = ("transaction",)

    def __init__(self, transaction):
        self.transaction = transaction


class Close:
    """Close the connection after writing the replies before it."""

    __slots__ = ()


class Verdict:
    """The answer to VerifyRecipient: accepted (with the server's token, handed back
    in the transaction's recipients) or refused with a reply line."""

    __slots__ = ("accepted", "reply", "token")

    def __init__(self, accepted, reply=None, token=None):
        self.accepted, self.reply, self.token = accepted, reply, token


class Transaction:
    """One MAIL transaction: sender, parameters, accepted recipients, the content."""

    def __init__(self, sender, smtputf8=False, body="7BIT", declared_size=None):
        self.sender = sender                # "" for the null path <>
        self.smtputf8 = smtputf8
        self.body = body                    # BODY= value (7BIT, 8BITMIME)
        self.declared_size = declared_size  # SIZE= value or None
        self.recipients = []                # [(address, token)] in RCPT order
        self.originals = []                 # each one's ORCPT address or None
        self.sink = None                    # open_sink()'s object once content arrives
        self.size = 0                       # content octets as sent (CRLF, unstuffed)
        self.failure = None                 # None, or the reason the content fails
        self.id = None                      # the server's id for it (Received)


# -- the session ------------------------------------------------------------------------

class Session:
    """One LMTP connection's protocol state; see the module docstring."""

    def __init__(self, limits, open_sink):
        self.limits = limits
        self._open_sink = open_sink     # () -> object with write(bytes)
        self.state = INITIAL
        self.transaction = None
        self.lhlo_name = None           # LHLO's argument (printable ASCII), for Received
        self._buf = bytearray()
        self._waiting = None            # the open request, or None
        self._errors = 0
        self._skip_line = False         # discarding an over-long command line
        self._body = None               # ContentWriter while content arrives
        self._line_start = True         # DATA: at the start of a line (after CRLF)
        self._bdat_left = 0             # BDAT: octets of this chunk still to read
        self._bdat_last = False
        self._bdat_used = False         # this transaction used BDAT (DATA then is 503)

    # -- the interface ------------------------------------------------------------------

    def greeting(self):
        return [Reply(f"220 {self.limits.hostname} {self.limits.greeting}\r\n".encode())]

    def feed(self, data):
        """Take bytes from the client; return the events they cause."""
        if self.state == CLOSED:
            return []
        self._buf += data
        return self._run([])

    def answer(self, result):
        """Answer the open request (a Verdict, or the list of per-recipient replies)."""
        request, self._waiting = self._waiting, None
        out = []
        if isinstance(request, VerifyRecipient):
            self._recipient_answered(request, result, out)
        elif isinstance(request, Deliver):
            self._delivered(request.transaction, result, out)
        else:
            raise RuntimeError("answer() without an open request")
        return self._run(out)

    def eof(self):
        """The client closed the connection (or the server is dropping it)."""
        out = []
        if self.transaction is not None and self._waiting is None:
            self._discard(out)
        self.state = CLOSED
        return out

    @property
    def waiting(self):
        return self._waiting is not None

    @property
    def busy(self):
        """A transaction that may still deliver is under way: shutdown waits for it.
        A MAIL whose every RCPT was refused has nothing to deliver: a client that
        stopped there (its DATA answered 503) must not hold a SIGTERM for
        DRAIN_TIMEOUT; it is told 421 like an idle one, and nothing is lost."""
        tx = self.transaction
        return tx is not None and bool(tx.recipients or self._waiting is not None
                                       or self.state in (DATA, BDAT))

    # -- the input loop -----------------------------------------------------------------

    def _run(self, out):
        while self._waiting is None and self.state != CLOSED:
            if self.state == DATA:
                if not self._data_step(out):
                    break
            elif self.state == BDAT:
                if not self._bdat_step(out):
                    break
            else:
                line = self._next_line(out)
                if line is None:
                    break
                self._command(line, out)
        return out

    def _next_line(self, out):
        """The next complete command line without its line end, or None."""
        while True:
            nl = self._buf.find(b"\n")
            if self._skip_line:
                if nl < 0:
                    del self._buf[:]
                    return None
                del self._buf[:nl + 1]
                self._skip_line = False
                continue
            if nl < 0:
                if len(self._buf) > MAX_COMMAND_LINE:
                    del self._buf[:]
                    self._skip_line = True
                    self._error(out, "500 5.5.2 Line too long")
                return None
            line = bytes(self._buf[:nl])
            del self._buf[:nl + 1]
            if len(line) + 1 > MAX_COMMAND_LINE:
                self._error(out, "500 5.5.2 Line too long")
                if self.state == CLOSED:
                    return None     # that error was one too many: read nothing more
                continue
            return line[:-1] if line.endswith(b"\r") else line

    # -- commands -----------------------------------------------------------------------

    def _command(self, line, out):
        verb, _, rest = line.partition(b" ")
        name = verb.upper().decode("ascii", "replace")
        handler = COMMANDS.get(name)
        if handler is None:
            if name in ("HELO", "EHLO"):
                self._error(out, "500 5.5.1 This is LMTP: use LHLO (RFC 2033)")
            else:
                self._error(out, "500 5.5.2 Unknown command")
            return
        handler(self, rest, out)

    def _reply(self, out, text):
        out.append(Reply(text.encode("utf-8", "surrogateescape") + CRLF))

    def _ok(self, out, text):
        self._errors = 0
        self._reply(out, text)

    def _error(self, out, text):
        if self.state == CLOSED:
            return                  # closed: the 421 was the last word
        self._errors += 1
        if self._errors > MAX_ERRORS:
            self._reply(out, "421 4.7.0 Too many errors, closing connection")
            self._close(out)
            return
        self._reply(out, text)

    def _close(self, out):
        if self.transaction is not None:
            self._discard(out)
        self.state = CLOSED
        out.append(Close())

    def _reset(self, out):
        if self.transaction is not None:
            self._discard(out)
        self.transaction = None
        self._bdat_used = False

    def _discard(self, out):
        tx, self.transaction, self._body = self.transaction, None, None
        if tx is not None and tx.sink is not None:
            out.append(Discard(tx))

    def cmd_lhlo(self, rest, out):
        domain = rest.strip()
        if not domain or not _printable_ascii(domain):
            self._error(out, "501 5.5.4 LHLO needs a domain or address literal")
            return
        self._reset(out)
        self.state = READY
        self.lhlo_name = domain[:255].decode("ascii")
        size = self.limits.max_size
        lines = [self.limits.hostname, "PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME",
                 f"SIZE {size}" if size else "SIZE", "CHUNKING", "SMTPUTF8"]
        text = "".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n"
        self._errors = 0
        out.append(Reply(text.encode()))

    def cmd_mail(self, rest, out):
        if self.state == INITIAL:
            self._error(out, "503 5.5.1 Send LHLO first")
            return
        if self.transaction is not None:
            self._error(out, "503 5.5.1 MAIL already given")
            return
        parsed = _path_argument(rest, b"FROM:")
        if isinstance(parsed, str):
            self._error(out, parsed)
            return
        raw_path, params = parsed
        tx = Transaction(None)
        for key, value in params:
            if key == "SIZE":
                if value is None or not value.isdigit() or len(value) > 20:
                    self._error(out, "501 5.5.4 Invalid SIZE parameter")
                    return
                tx.declared_size = int(value)
            elif key == "BODY":
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    self._error(out, "555 5.5.4 Unsupported BODY parameter")
                    return
                tx.body = value.upper()
            elif key == "SMTPUTF8" and value is None:
                tx.smtputf8 = True
            else:
                self._error(out, "555 5.5.4 Unsupported parameter "
                            + _shown(key))
                return
        sender = _check_path(raw_path, tx.smtputf8, null_ok=True)
        if isinstance(sender, tuple):
            self._error(out, sender[0])
            return
        limit = self.limits.max_size
        if limit and tx.declared_size is not None and tx.declared_size > limit:
            self._error(out, "552 5.3.4 Message size exceeds fixed maximum message size")
            return
        tx.sender = sender
        self.transaction = tx
        self._ok(out, "250 2.1.0 OK")

    def cmd_rcpt(self, rest, out):
        tx = self.transaction
        if tx is None or self.state != READY or tx.sink is not None:
            self._error(out, "503 5.5.1 MAIL needed first")
            return
        parsed = _path_argument(rest, b"TO:")
        if isinstance(parsed, str):
            self._error(out, parsed)
            return
        raw_path, params = parsed
        original = None
        for key, value in params:
            if key != "ORCPT" or original is not None:
                self._error(out, "555 5.5.4 Unsupported parameter " + _shown(key))
                return
            original = _orcpt(value)
            if isinstance(original, tuple):
                self._error(out, original[0])
                return
        address = _check_path(raw_path, tx.smtputf8, null_ok=False)
        if isinstance(address, tuple):
            self._error(out, address[0])
            return
        if len(tx.recipients) >= self.limits.max_recipients:
            self._reply(out, "452 4.5.3 Too many recipients")
            return
        self._waiting = VerifyRecipient(address, tx, original or None)
        out.append(self._waiting)

    def _recipient_answered(self, request, verdict, out):
        tx = request.transaction
        if tx is not self.transaction:      # reset while the answer was pending
            return
        if isinstance(verdict, Verdict) and verdict.accepted:
            tx.recipients.append((request.address, verdict.token))
            tx.originals.append(request.original)
            self._ok(out, verdict.reply or "250 2.1.5 OK")
            return
        text = verdict.reply if isinstance(verdict, Verdict) and verdict.reply else \
            "451 4.3.0 Temporary internal error"
        self._errors = 0            # a refused recipient is the client's data, not a
        self._reply(out, _one_line(text))   # protocol error

    def cmd_data(self, rest, out):
        tx = self.transaction
        if rest.strip():
            self._error(out, "501 5.5.4 DATA takes no argument")
            return
        if tx is None or self.state != READY:
            self._error(out, "503 5.5.1 MAIL needed first")
            return
        if self._bdat_used:
            self._error(out, "503 5.5.1 DATA after BDAT is not allowed (RFC 3030)")
            return
        if not tx.recipients:
            self._error(out, "503 5.5.1 No valid recipients")
            return
        self._start_content(tx)
        self.state = DATA
        self._line_start = True
        self._ok(out, "354 OK")

    def cmd_bdat(self, rest, out):
        words = rest.split()
        if not words or len(words) > 2 or not words[0].isdigit() or len(words[0]) > 20 \
                or (len(words) == 2 and words[1].upper() != b"LAST"):
            # The chunk's size is unknown: what follows cannot be told from
            # commands, so the connection cannot go on (RFC 3030 4.2's advice).
            self._reply(out, "501 5.5.4 Syntax: BDAT size [LAST]")
            self._close(out)
            return
        size, last = int(words[0]), len(words) == 2
        tx = self.transaction
        # RFC 3030 4.2: a refused BDAT's data is still read (and dropped).
        if self.state == INITIAL or tx is None or not tx.recipients:
            reason = "503 5.5.1 Send LHLO first" if self.state == INITIAL else \
                "503 5.5.1 MAIL needed first" if tx is None else \
                "503 5.5.1 No valid recipients"
            self._bdat_left, self._bdat_last = size, None
            self._bdat_refusal, self._bdat_return = reason, self.state
            self.state = BDAT
            return
        if not self._bdat_used:
            self._start_content(tx)
            self._bdat_used = True
        self._bdat_left, self._bdat_last = size, last
        self.state = BDAT

    def cmd_rset(self, rest, out):
        self._reset(out)
        if self.state != INITIAL:
            self.state = READY
        self._ok(out, "250 2.0.0 OK")

    def cmd_noop(self, rest, out):
        self._ok(out, "250 2.0.0 OK")

    def cmd_vrfy(self, rest, out):
        # RFC 5321 3.5.3: 252, neither confirming nor denying (RCPT is the check).
        self._ok(out, "252 2.5.2 Cannot VRFY user, but will accept message "
                 "and attempt delivery")

    def cmd_quit(self, rest, out):
        self._reply(out, f"221 2.0.0 {self.limits.hostname} Closing connection")
        self._close(out)

    # -- content --------------------------------------------------------------------------

    def _start_content(self, tx):
        tx.sink = self._open_sink()
        self._body = ContentWriter(tx, self.limits)

    def _data_step(self, out):
        """Consume DATA content from the buffer; False when more input is needed."""
        buf, body = self._buf, self._body
        pos = 0
        while True:
            if self._line_start:
                head = bytes(buf[pos:pos + 3])
                if head == b".\r\n":
                    pos += 3
                    del buf[:pos]
                    self._end_of_content(out)
                    return True
                if head[:1] == b".":
                    if len(head) < 3 and b".\r\n".startswith(head):
                        break           # "." or ".\r": the terminator or not, later
                    pos += 1            # RFC 5321 4.5.2: drop the stuffed dot
                    body.transmitted(1)
                elif not head:
                    break
                self._line_start = False
            # Up to the next line that starts with a dot, everything is content.
            dot = buf.find(b"\r\n.", pos)
            if dot >= 0:
                body.write(buf[pos:dot + 2])
                pos = dot + 2
                self._line_start = True
                continue
            end = len(buf)
            if buf.endswith(b"\r"):
                end -= 1                # may be the CR of CRLF "." CRLF: keep it
            body.write(buf[pos:end])
            if end > pos and buf[end - 2:end] == b"\r\n":
                self._line_start = True
            pos = end
            break
        del buf[:pos]
        return False

    def _bdat_step(self, out):
        buf = self._buf
        take = min(len(buf), self._bdat_left)
        if take:
            if self._bdat_last is not None:
                self._body.write(buf[:take])
            del buf[:take]
            self._bdat_left -= take
        if self._bdat_left:
            return False
        if self._bdat_last is None:         # a refused BDAT: its data is now read
            self.state = self._bdat_return
            self._error(out, self._bdat_refusal)
            return True
        self.state = READY
        if self._bdat_last:
            self._end_of_content(out)
        else:
            self._ok(out, f"250 2.0.0 {self.transaction.size} octets received")
        return True

    def _end_of_content(self, out):
        tx = self.transaction
        self._body.finish()
        self._body = None
        self.state = READY
        self._errors = 0
        if tx.failure is not None:
            reply = tx.failure
            for address, _ in tx.recipients:
                self._reply(out, _with_address(reply, address))
            self._reset(out)
            return
        self._waiting = Deliver(tx)
        out.append(self._waiting)

    def _delivered(self, tx, replies, out):
        """Exactly one reply per recipient, whatever the server answered."""
        replies = list(replies) if isinstance(replies, (list, tuple)) else []
        for i, (address, _) in enumerate(tx.recipients):
            text = replies[i] if i < len(replies) and isinstance(replies[i], str) \
                and replies[i][:1] in "2345" else None
            self._reply(out, _one_line(text) if text else
                        f"451 4.3.0 <{address}> Temporary internal error")
        self.transaction = None
        self._bdat_used = False


COMMANDS = {"LHLO": Session.cmd_lhlo, "MAIL": Session.cmd_mail, "RCPT": Session.cmd_rcpt,
            "DATA": Session.cmd_data, "BDAT": Session.cmd_bdat, "RSET": Session.cmd_rset,
            "NOOP": Session.cmd_noop, "VRFY": Session.cmd_vrfy, "QUIT": Session.cmd_quit}


class ContentWriter:
    """The message content of one transaction into its sink: size and line limits,
    CRLF -> LF. Past a failure nothing more is written (the content is still read)."""

    def __init__(self, tx, limits):
        self.tx, self.sink = tx, tx.sink
        self.max_size = limits.max_size
        self.max_line = limits.max_text_line
        self.line = 0           # octets of the current line so far (as transmitted)
        self.cr = False         # the last octet written was a CR (held back)

    def transmitted(self, n):
        """Octets sent but not content (a stuffed dot): they count for the line."""
        self.line += n

    def write(self, data):
        tx = self.tx
        tx.size += len(data)
        if tx.failure is not None or not data:
            return
        if self.max_size and tx.size > self.max_size:
            self._fail("552 5.3.4 Message size exceeds fixed maximum message size")
            return
        last = data.rfind(b"\n")
        if last < 0:
            self.line += len(data)
            longest = self.line
        else:
            longest = self.line + data.find(b"\n") + 1
            if len(data) > self.max_line and longest <= self.max_line:
                longest = max(map(len, data[:last].split(b"\n"))) + 1
            self.line = len(data) - last - 1
            longest = max(longest, self.line)
        if longest > self.max_line:
            self._fail(f"554 5.6.0 Message has a line longer than {self.max_line} octets "
                       "(RFC 5321 4.5.3.1.6)")
            return
        self._store(data)

    def _store(self, data):
        if self.cr:
            data = b"\r" + data
            self.cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self.cr = True
        if b"\r\n" in data:
            data = bytes(data).replace(b"\r\n", b"\n")
        if data:
            self.sink.write(data)

    def finish(self):
        if self.tx.failure is None and self.cr:
            self.sink.write(b"\r")
        self.cr = False

    def _fail(self, reply):
        self.tx.failure = reply


# -- syntax -------------------------------------------------------------------------------

def _path_argument(rest, keyword):
    """'FROM:<path> params' -> (path bytes, [(KEY, value or None)]) or an error reply."""
    if rest[:len(keyword)].upper() != keyword:
        return f"501 5.5.4 Syntax: {'MAIL FROM' if keyword == b'FROM:' else 'RCPT TO'}:<address>"
    rest = rest[len(keyword):].lstrip(b" ")
    if not rest.startswith(b"<"):
        return "501 5.5.4 Address must be in angle brackets"
    close = _closing_bracket(rest)
    if close < 0:
        return "501 5.5.4 Unterminated address"
    path, params_text = rest[1:close], rest[close + 1:]
    if params_text and not params_text.startswith(b" "):
        return "501 5.5.4 Syntax error after the address"
    params = []
    for word in params_text.split():
        key, eq, value = word.partition(b"=")
        if not key or not _printable_ascii(word):
            return "501 5.5.4 Invalid parameter"
        params.append((key.upper().decode(), value.decode() if eq else None))
    return path, params


def _orcpt(value):
    """ORCPT=addr-type;xtext (RFC 3461 4.2): the original address when the type is
    rfc822 ("" for another type: accepted and not used, as Dovecot's lmtp), or
    (error reply,). The decoded address is data: printable, without CR/LF."""
    if value is None or ";" not in value:
        return ("501 5.5.4 Invalid ORCPT= parameter: no address type",)
    kind, _, xtext = value.partition(";")
    if len(value) > MAX_ORCPT or not kind or not xtext:
        return ("501 5.5.4 Invalid ORCPT= parameter",)
    decoded = bytearray()
    i = 0
    while i < len(xtext):
        ch = xtext[i]
        if ch == "+":
            digits = xtext[i + 1:i + 3]
            if len(digits) != 2 or any(d not in "0123456789ABCDEF" for d in digits):
                return ("501 5.5.4 Invalid ORCPT= parameter: invalid hexchar after '+' "
                        "in xtext",)
            decoded.append(int(digits, 16))
            i += 3
            continue
        if not "!" <= ch <= "~" or ch == "=":
            return ("501 5.5.4 Invalid ORCPT= parameter: invalid character in xtext",)
        decoded.append(ord(ch))
        i += 1
    if kind.lower() != "rfc822":
        return ""
    try:
        address = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return ("501 5.5.4 Invalid ORCPT= parameter: not UTF-8",)
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    if not address or not address.isprintable():
        return ("501 5.5.4 Invalid ORCPT= parameter: invalid address",)
    return address


def _closing_bracket(rest):
    """Index of the '>' that ends the path starting at rest[0] ('<'), quotes honoured."""
    quoted = escaped = False
    for i in range(1, min(len(rest), MAX_PATH + 1)):
        ch = rest[i]
        if escaped:
            escaped = False
        elif quoted and ch == 0x5C:
            escaped = True
        elif ch == 0x22:
            quoted = not quoted
        elif ch == 0x3E and not quoted:
            return i
    return -1


def _check_path(raw, smtputf8, null_ok):
    """Return the address (str) in a path, or (error reply,)."""
    if len(raw) + 2 > MAX_PATH:
        return ("501 5.1.3 Address too long",)
    if not raw:
        return "" if null_ok else ("501 5.1.3 Recipient address required",)
    if raw.startswith(b"@"):        # RFC 5321 4.1.2: a source route is ignored
        colon = raw.find(b":")
        if colon < 0:
            return ("501 5.1.3 Invalid source route",)
        raw = raw[colon + 1:]
    if len(raw.translate(None, _CONTROL_BYTES)) != len(raw):
        return ("501 5.1.3 Invalid address",)
    if not raw.isascii():
        if not smtputf8:
            return ("553 5.6.7 Non-ASCII address needs SMTPUTF8 (RFC 6531)",)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return ("501 5.1.3 Address is not valid UTF-8",)
    else:
        text = raw.decode("ascii")
    local, at, domain = text.rpartition("@")
    if not at:
        local, domain = text, None
    if not local or (domain is not None and not _valid_domain(domain)) or \
            not _valid_local(local):
        return ("501 5.1.3 Invalid address",)
    return text


# Characters an address may not have outside quotes (local part) or at all (domain),
# and the control bytes no address may hold.
_LOCAL_SPECIALS = frozenset(' <>(),;:\\[]"')
_DOMAIN_SPECIALS = frozenset(' <>()[],;:\\@"')
_CONTROL_BYTES = bytes(range(0x20)) + b"\x7f"


def _valid_local(local):
    if local.startswith('"'):
        return len(local) >= 2 and local.endswith('"')
    return _LOCAL_SPECIALS.isdisjoint(local) and ".." not in local \
        and not local.startswith(".") and not local.endswith(".")


def _valid_domain(domain):
    if domain.startswith("[") and domain.endswith("]"):
        return len(domain) > 2
    labels = domain.split(".")
    return _DOMAIN_SPECIALS.isdisjoint(domain) and \
        all(lab and not lab.startswith("-") and not lab.endswith("-") for lab in labels)


def _printable_ascii(data):
    return all(0x21 <= b < 0x7F for b in data)


def _shown(text):
    return "".join(ch if " " < ch < "\x7f" else "?" for ch in text[:40])


def _one_line(text):
    if text.isprintable():          # no control character: nothing to replace
        return text
    return "".join(ch if ch >= " " and ch != "\x7f" else " " for ch in text)


def _with_address(reply, address):
    """'552 5.3.4 text' -> '552 5.3.4 <address> text' (Dovecot's per-recipient form)."""
    parts = reply.split(" ", 2)
    return f"{parts[0]} {parts[1]} <{address}> {parts[2]}"

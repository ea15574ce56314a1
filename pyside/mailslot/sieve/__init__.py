"""mailslot's Sieve: a complete interpreter with Pigeonhole's extension set.

The delivery engine imports this package only when the user has a script. The
whole interface is one call:

    from mailslot import sieve
    res = sieve.run(scripts, message, envelope, settings=settings,
                    mailbox_exists=exists, log=log)

scripts         ordered script paths: sieve_before..., the personal script,
                sieve_after... (a missing file is skipped). Pass
                global_scripts=set(...) to say which are the administrator's.
message         an object with .header_buffer() -> (buffer, end), the raw
                header being buffer[:end], and .read_bytes() -> the whole raw
                message as one buffer (bytes or bytearray, read only by
                body/mime/editheader and size; treated as read-only); an
                optional .size() -> int spares reading it for the size test.
                The engine's message.Message and mail.RawMessage offer them.
envelope        a mapping or object with "from" (sender; "" or "<>" is null),
                "to" (recipient), "orig_to" (original recipient, optional) and
                "auth" (authenticated user, optional).
settings        a mapping of Dovecot setting names (sieve_max_actions, ...;
                see settings.py), or None for Pigeonhole's defaults.
mailbox_exists  name -> bool, for the mailboxexists test (None: always false).
log             (level, text) -> None, the admin log; the user's errors also go
                to <script>.log (sieve_user_log).
duplicate       optional object with check(key: bytes, period: int) -> bool and
                mark(key, period) for the duplicate extension.

run() returns a SieveResult:
  .status           "success", "failed", "temporary failure" or "resource limit"
                    (anything but success means the engine must do implicit keep)
  .actions          list of dicts in order, each with "type":
                      store     {"mailbox", "flags"?, "create"?, "copy"?}
                      keep      {"mailbox", "flags"?}
                      redirect  {"address", "copy"?}
                      reject / ereject {"reason"}     discard {}
                      vacation  {"reason", "subject", "from", "addresses", "mime",
                                 "seconds", "handle", "send", and when send is
                                 True "to", "reply_from", "reply_subject",
                                 "envelope_from", "in_reply_to", "references",
                                 "duplicate_id" (handle, sender), "period",
                                 "to_header_ignore_envelope";
                                 when False "skip_reason" (a log line)}
                      notify    {"method", "importance", "message", "from",
                                 "options", "recipients" [{"address", "cc"}],
                                 "headers", "body", "subject"}
                      duplicate_mark {"key" (hex), "period", "handle", "last"}:
                                 mark key in the duplicate store if the
                                 delivery succeeds
                    a store/keep may carry "header_fields" (a tuple of
                    (name, value)) and "edited_header" (a mail.HeaderSnapshot:
                    .pieces() is the edited message to write) when editheader
                    changed the message before it was filed.
  .implicit_keep    True when the message must also be kept in
                    .implicit_keep_mailbox with .implicit_keep_flags
  .errors           Pigeonhole-style lines "<script>: line N: error: <msg>."
  .header_fields    the edited header (a tuple) when editheader changed it, else None

Nothing in run() raises for a bad script or message: errors end in implicit
keep, as in Pigeonhole. Only the tools (sieve-test, sievec: tool.py) print.

Which scripts run, from the settings (sieve, sieve_before*, sieve_after*,
sieve_default, sieve_discard, sieve_user_log) and the user's home:

    plan = sieve.delivery_scripts(settings, home)
    res = sieve.run(plan["scripts"], message, envelope, settings=settings,
                    global_scripts=plan["global_scripts"],
                    user_log=plan["user_log"], discard_script=plan["discard"],
                    home=home, ...)

home is the user's home from the userdb: :personal includes find the user's
script directory there (or from the `sieve` setting), and the compile cache of
the user's own scripts lives below it (never $HOME); user= (the login, for the environment's "domain") is optional;
default_mailbox= is dovecot-lda's -m (where keep files; default INBOX).
"""


# The cheap "is there any script?" check lives outside this package (importing
# the package is what a delivery without scripts must not pay for).
from ..script_location import ADMIN_SCRIPT_SETTINGS, has_scripts  # noqa: F401,E402


def delivery_scripts(settings, home):
    """The scripts a delivery runs, as Pigeonhole picks them (see runner.py)."""
    from .runner import delivery_scripts as _plan
    return _plan(settings, home)


def run(scripts, message, envelope, *, settings=None, mailbox_exists=None, log=None,
        **options):
    """Run a delivery's Sieve scripts; see the package docstring."""
    from .runner import run as _run
    return _run(scripts, message, envelope, settings=settings,
                mailbox_exists=mailbox_exists, log=log, **options)

"""vnd.dovecot.testsuite: run Pigeonhole's own test suite against mailslot's Sieve.

Pigeonhole's authors test their engine with Sieve scripts (tests/**/*.svtest)
that use a test-only extension, vnd.dovecot.testsuite: `test "name" { ... }`
blocks, test_fail, test_set (message and envelope), test_script_compile/run,
test_error, test_result_action/execute/reset, test_message, test_config_*,
test_mailbox_create, test_binary_save/load. This package gives mailslot's
interpreter the same extension, with the semantics Pigeonhole's `testsuite`
tool gives it (facts taken from Pigeonhole 0.5.19's src/testsuite; the code is
mailslot's own):

    commands.py   the commands and tests as the validator sees them
    runtime.py    what they do: the test state (messages, envelope, a mail
                  store in memory, captured outgoing mail, the error log)
    paths.py      test_set's envelope paths, read as Dovecot's parser does
    tool.py       `mailslot sieve-testsuite [-F] [--json] FILE.svtest`

Test-only: the extension is not in sieve.extensions.EXTENSIONS. Only tool.py
registers it, in its own process, so `require "vnd.dovecot.testsuite"` is an
unknown capability to every delivery and to sieve-test / sievec.

Outgoing mail (redirect, reject, vacation, notify) is composed by mailslot's
own outgoing-mail code (mailslot.send: OutgoingMail with a CaptureTransport)
and captured, never sent; test_message :smtp N reads it back.

Security: this runs test scripts as the caller, writes nothing outside its own
temporary directory (none at all: the mail store is in memory) and is never
reached from the delivery path.
"""

"""Fuzzing the Sieve lexer, parser, validator and interpreter (mailslot.sieve).

Scripts are made by a small grammar of Sieve (require, nested if/else, foreverypart,
tests combined with allof/anyof/not, actions with variables), drawn from Sieve's own vocabulary (commands, tests, tags, comparators,
match types, strings with variables and encoded characters, numbers with
quantifiers, brackets) put together at random, and from raw bytes. Properties:
sieve.run never raises, whatever the script and message; its status is one of the
four the package documents; anything but success leaves the implicit keep on (the
message is never lost to a broken script); every action is a dict of a known type;
the time per run is bounded (sieve_max_cpu_time, here 2 s).
"""

import os
import tempfile
import time

from hypothesis import given
from hypothesis import strategies as st

from mailslot import sieve
from mailslot.sieve.mail import RawMessage
from tests.fuzz.strategies import mail_bytes

WORDS = ["require", "if", "elsif", "else", "keep", "discard", "stop", "fileinto", "redirect",
         "reject", "ereject", "vacation", "set", "addflag", "setflag", "removeflag",
         "header", "address", "envelope", "exists", "size", "allof", "anyof", "not", "true",
         "false", "body", "string", "date", "currentdate", "duplicate", "foreverypart",
         "break", "extracttext", "include", "return", "global", "addheader", "deleteheader",
         "notify", "valid_notify_method", "mailboxexists", "ihave", "error",
         ":is", ":contains", ":matches", ":regex", ":value", ":count", ":over", ":under",
         ":comparator", ":all", ":localpart", ":domain", ":copy", ":create", ":flags",
         ":days", ":subject", ":from", ":addresses", ":handle", ":raw", ":text",
         ":content", ":lower", ":upper", ":quotewildcard", ":length", ":index", ":last",
         ":personal", ":global", ":once", ":optional", ":name", ":first",
         '"i;ascii-casemap"', '"i;octet"', '"i;ascii-numeric"', '"gt"', '"eq"',
         '"fileinto"', '"variables"', '"regex"', '"body"', '"imap4flags"', '"vacation"',
         '"envelope"', '"relational"', '"comparator-i;ascii-numeric"', '"editheader"',
         '"foreverypart"', '"mime"', '"extracttext"', '"include"', '"duplicate"',
         '"date"', '"enotify"', '"mailbox"', '"copy"', '"encoded-character"', '"ihave"',
         '"subject"', '"from"', '"to"', '"*"', '"?"', '"a*b?c"', '"${1}"', '"${x}"',
         '"${unicode:41}"', '"${hex:41 42}"', '"(a+)+$"', '"[[:alpha:]]"', '"INBOX"',
         '"Odd"', '"\\\\Seen"', '"x@example.org"', '"mailto:x@example.org"', '""',
         "100", "1K", "1M", "1G", "0", "99999999999999999999", "{", "}", "(", ")", "[",
         "]", ",", ";", "#c\n", "/* c */", "text:\nline\n.\n", "\n", " "]

REQUIRE = ('require ["fileinto", "variables", "regex", "body", "imap4flags", "relational", '
           '"comparator-i;ascii-numeric", "editheader", "foreverypart", "mime", "envelope", '
           '"extracttext", "copy", "mailbox", "date", "duplicate", "encoded-character"];\n')
pattern = st.sampled_from(['"*"', '"?*?*?*?*a"', '"hi"', '"(a|b)*c"', '"(a+)+$"', '"${1}"',
                           '"x${hex:41}"', '"[a-z]+"', '"*${x}*"', '""'])
header_name = st.sampled_from(['"subject"', '"from"', '"to"', '"content-type"', '"x-none"'])
leaf_test = st.one_of(
    st.builds(lambda m, h, p: f"header {m} {h} {p}",
              st.sampled_from([":is", ":contains", ":matches", ":regex", ":value \"gt\"",
                               ":count \"ge\" :comparator \"i;ascii-numeric\""]),
              header_name, pattern),
    st.builds(lambda a, p: f"address {a} :all \"from\" {p}",
              st.sampled_from([":is", ":matches", ":contains"]), pattern),
    st.builds(lambda n: f"size :over {n}", st.sampled_from(["0", "1K", "10M"])),
    st.builds(lambda p: f"body :text :contains {p}", pattern),
    st.builds(lambda p: f"string :matches \"${{x}}\" {p}", pattern),
    st.just("exists \"subject\""), st.just("true"), st.just("false"),
    st.just("duplicate"), st.just('envelope :is "from" "sender@example.org"'),
    st.just('header :mime :type "content-type" "text"'))
test = st.recursive(leaf_test, lambda inner: st.one_of(
    inner.map(lambda t: f"not {t}"),
    st.lists(inner, min_size=1, max_size=3).map(lambda ts: f"allof({', '.join(ts)})"),
    st.lists(inner, min_size=1, max_size=3).map(lambda ts: f"anyof({', '.join(ts)})")),
    max_leaves=6)
leaf_action = st.sampled_from([
    "keep;", "discard;", 'fileinto "Odd";', 'fileinto :copy :create "A/B";', "stop;",
    'addflag "\\\\Seen";', 'set "x" "${1}${x}${x}";', 'set :upper "y" "${x}";',
    'redirect "other@example.org";', 'addheader "X-F" "${x}";', 'deleteheader "subject";',
    'setflag "${x}";', 'fileinto "${x}";'])
block = st.recursive(
    st.lists(leaf_action, max_size=3).map(" ".join),
    lambda inner: st.one_of(
        st.builds(lambda t, a, b: f"if {t} {{ {a} }} else {{ {b} }}", test, inner, inner),
        inner.map(lambda a: f"foreverypart {{ extracttext \"x\"; {a} }}"),
        st.lists(inner, max_size=3).map(" ".join)),
    max_leaves=8)
structured = block.map(lambda b: REQUIRE + b)
script = st.one_of(structured, st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join),
                   st.text(max_size=200))
ENVELOPE = {"from": "sender@example.org", "to": "user@example.org"}
STATUSES = {"success", "failed", "temporary failure", "resource limit"}
TYPES = {"store", "keep", "redirect", "reject", "ereject", "discard", "vacation", "notify",
         "duplicate_mark"}
MESSAGE = (b"From: Sender <sender@example.org>\nTo: user@example.org\nSubject: hi\n"
           b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
           b"hello\n--b--\n")


@given(script, st.one_of(st.just(MESSAGE), mail_bytes))
def test_any_script_on_any_message_ends_in_a_result(text, message):
    with tempfile.TemporaryDirectory() as home:
        path = os.path.join(home, "fuzz.sieve")
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(text)
        start = time.monotonic()
        res = sieve.run([path], RawMessage(message), ENVELOPE, cache=False, home=home,
                        settings={"sieve_max_cpu_time": "2s",
                                  "sieve_extensions": "+editheader"}, now=1772694489)
        took = time.monotonic() - start
    assert res.status in STATUSES, res.status
    if res.status != "success":
        assert res.implicit_keep
    for action in res.actions:
        assert action["type"] in TYPES, action
    assert took < 10, (text, took)


"""The relay's pure C rules, called through cffi from the very sources it is built from.

relay_rules.c is compiled into a shared library for this test; its header is fed to
cffi after the preprocessor has expanded the limits. Cases for the policy parser are
files in cases/policy/ (first line: "# expect: ok" or "# expect: <rule>").
"""
import re
import subprocess
from pathlib import Path

import pytest

cffi = pytest.importorskip("cffi")

HERE = Path(__file__).resolve().parent
HELPER_C = HERE.parents[1] / "helper_c"
POLICY_CASES = sorted((HERE / "cases" / "policy").glob("*.policy"))


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    out = tmp_path_factory.mktemp("rules")
    subprocess.run(["make", "-s", "-C", str(HELPER_C), f"OUT={out}", "lib"], check=True)
    header = (HELPER_C / "relay_rules.h").read_text()
    header = "\n".join(line for line in header.splitlines()
                       if not line.startswith(("#include", "#ifndef MAILSLOT", "#endif",
                                               "#define MAILSLOT_RELAY_RULES_H")))
    cdef = subprocess.run(["cc", "-E", "-P", "-x", "c", "-"], input=header, text=True,
                          capture_output=True, check=True).stdout
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    lib = ffi.dlopen(str(out / "librelayrules.so"))
    consts = {m[0]: int(m[1].rstrip("UL")) for m in
              re.findall(r"#define (MS_\w+) (\d+U?L?)\b", header)}
    return ffi, lib, consts


def parse_policy(rules, text):
    ffi, lib, _ = rules
    pol = ffi.new("struct ms_policy *")
    err = ffi.new("char[512]")
    data = text.encode() if isinstance(text, str) else text
    rc = lib.ms_policy_parse(data, len(data), pol, err, 512)
    return rc, pol, ffi.string(err).decode()


GOOD = """caller_groups = secmail
target_uids = 1000-59999, 60001
target_gids = 100, 1000-59999
interpreter = /usr/bin/python3
entry = /usr/lib/mailslot/mailslot-lda
resolver = nss
"""


# --- policy ------------------------------------------------------------------------

@pytest.mark.parametrize("case", POLICY_CASES, ids=[p.stem for p in POLICY_CASES])
def test_policy_cases(rules, case):
    text = case.read_text()
    expect = text.splitlines()[0].removeprefix("# expect: ").strip()
    rc, _, err = parse_policy(rules, text)
    if expect == "ok":
        assert rc == 0, err
    else:
        assert rc == -1
        assert err.startswith(expect + ":"), err


def test_shipped_example_policy_parses(rules):
    rc, pol, err = parse_policy(rules, (HELPER_C / "relay.policy.example").read_text())
    assert rc == 0, err
    assert pol.resolver == 2 and pol.caller_config == 0 and pol.no_new_privs == 0
    # The example says what the engine's default auth_username_format does, and
    # strips the engine's default recipient_delimiter.
    assert rules[0].string(pol.username_format) == b"%Lu"
    assert rules[0].string(pol.recipient_delimiter) == b"+"


def test_packaged_policy_parses(rules):
    rc, pol, err = parse_policy(rules, (HELPER_C.parent / "packaging" / "etc" /
                                        "relay.policy").read_text())
    assert rc == 0, err
    assert rules[0].string(pol.username_format) == b"%Lu"
    assert rules[0].string(pol.recipient_delimiter) == b"+"


def test_policy_values_are_parsed(rules):
    ffi = rules[0]
    rc, pol, err = parse_policy(rules, GOOD + "pass_env = A, B_2\nno_new_privs = yes\n")
    assert rc == 0, err
    assert ffi.string(pol.caller_groups[0]) == b"secmail"
    assert [(pol.target_uids[i].lo, pol.target_uids[i].hi) for i in range(pol.n_target_uids)] \
        == [(1000, 59999), (60001, 60001)]
    assert pol.resolver == 1 and pol.no_new_privs == 1 and pol.caller_config == 0
    assert [ffi.string(pol.pass_env[i]) for i in range(pol.n_pass_env)] == [b"A", b"B_2"]


def test_policy_without_trailing_newline_and_with_comments(rules):
    rc, _, err = parse_policy(rules, "  # comment\n\n" + GOOD.rstrip("\n"))
    assert rc == 0, err


def test_policy_reports_the_line(rules):
    rc, _, err = parse_policy(rules, GOOD + "\nbogus = 1\n")
    assert rc == -1 and err == "policy-key: line 8: unknown key bogus"


def test_policy_size_is_bounded(rules):
    rc, _, err = parse_policy(rules, GOOD + "#" * 70000)
    assert rc == -1 and err.startswith("policy-syntax")


# --- user names: username_format ------------------------------------------------------

def format_name(rules, fmt, user):
    ffi, lib, consts = rules
    out = ffi.new("char[]", consts["MS_USER_MAX"] + 1)
    err = ffi.new("char[512]")
    rc = lib.ms_username_format(fmt.encode(), user.encode(), out, consts["MS_USER_MAX"] + 1,
                                err, 512)
    return rc, ffi.string(out).decode(), ffi.string(err).decode()


def test_username_format_default_is_byte_for_byte(rules):
    rc, pol, err = parse_policy(rules, GOOD)
    assert rc == 0, err
    assert rules[0].string(pol.username_format) == b"%u"
    rc, pol, err = parse_policy(rules, GOOD + "username_format = %Ln@example.org\n")
    assert rc == 0 and rules[0].string(pol.username_format) == b"%Ln@example.org", err


# (template, -d, canonical name): Dovecot's auth variables, %n and %d split at the
# first '@'; L lower-cases ASCII only.
FORMATTED = [
    ("%u", "Bob", "Bob"),
    ("%Lu", "Bob", "bob"),
    ("%Lu", "Bob@Example.ORG", "bob@example.org"),
    ("%Lu", "bob", "bob"),
    ("%n", "Bob@Example.org", "Bob"),
    ("%Ln", "Bob@Example.org", "bob"),
    ("%Ln", "bob", "bob"),
    ("%Ln@%Ld", "A@B@C", "a@b@c"),
    ("%Ln@example.org", "Bob", "bob@example.org"),
    ("%Ln+%d", "Bob@Dom", "bob+Dom"),
    ("%d%Lu", "BOB", "bob"),
    ("%Lu", "MSLT-RBOB_1.x=y", "mslt-rbob_1.x=y"),
]


@pytest.mark.parametrize("fmt, user, canonical", FORMATTED)
def test_username_format(rules, fmt, user, canonical):
    rc, out, err = format_name(rules, fmt, user)
    assert rc == 1, err
    assert out == canonical


@pytest.mark.parametrize("fmt, user, canonical", FORMATTED)
def test_username_format_agrees_with_the_engine(rules, fmt, user, canonical):
    # The engine expands auth_username_format with mailslot.variables: the relay's
    # subset must give the very same name, or the two would look up different users.
    from mailslot.variables import expand, user_values
    assert format_name(rules, fmt, user)[1] == expand(fmt, user_values(user, None))


@pytest.mark.parametrize("fmt, user, why", [
    ("%n", "@example.org", "empty"),              # nothing before the '@'
    ("%Ln%d", "@", "empty"),
    ("%Ld.%Ln", "a@-b", "not a valid user name"),  # "-b.a" could be read as an option
    ("%Ln.%Ld", "x@.y", "not a valid user name"),  # "x..y"
    ("%u%u", "x" * 200, "longer than 256"),
    ("%Lu", "-x", "not a valid user name"),        # -d itself is refused
    ("%Lu", "a b", "not a valid user name"),
])
def test_username_format_that_names_no_user(rules, fmt, user, why):
    rc, out, err = format_name(rules, fmt, user)
    assert rc == 0 and out == ""
    assert why in err, err


@pytest.mark.parametrize("fmt", ["%x", "%Uu", "%{user}", "%1n", "%%u", "%", "%u%L", "bob",
                                 "%d", "%Ld", "%u/x", "%u x", "", "%u" * 40])
def test_username_format_refuses_what_it_does_not_know(rules, fmt):
    ffi, lib, _ = rules
    err = ffi.new("char[512]")
    assert lib.ms_username_format_check(fmt.encode(), err, 512) == -1
    assert ffi.string(err).decode().startswith("policy-value: username_format:")
    assert format_name(rules, fmt, "bob")[0] == -1


def test_username_format_error_names_the_line_and_sequence(rules):
    rc, _, err = parse_policy(rules, GOOD + "username_format = %Lx\n")
    assert rc == -1
    assert err.startswith("policy-value: line 7: username_format: unknown %-sequence"), err
    assert '"%Lx"' in err


# --- user names: recipient_delimiter ----------------------------------------------------

def strip_name(rules, delims, user):
    ffi, lib, consts = rules
    out = ffi.new("char[]", consts["MS_USER_MAX"] + 1)
    n = lib.ms_strip_detail(delims.encode(), user.encode(), out, consts["MS_USER_MAX"] + 1)
    return n, ffi.string(out).decode()


# (recipient_delimiter, -d): every quirk of the engine's strip_detail -- several
# delimiter characters (the earliest wins), a delimiter as the first character (that
# character is ignored, even where it occurs again later), the LAST '@' ends the local
# part, the domain is never cut, empty delimiters cut nothing.
STRIPPED = [
    ("+", "bob+lists"), ("+", "bob"), ("+", "bob+"), ("+", "bob+a+b"),
    ("+", "bob+lists@Example.org"), ("+", "bob@ex+ample.org"), ("+", "a+b@c@d"),
    ("+", "a@b+c@d"), ("+", "+lists"), ("+", "+bob+lists"), ("+", "+@x"), ("+", "@x+y"),
    ("+-", "bob-a+b"), ("-+", "bob+a-b"), ("+-", "mslt-rbob+lists"), ("_+", "_bob+x"),
    ("_+", "a_b+c"), ("++", "b+c"), ("", "bob+lists"), ("=", "x=y@d"), ("+", "bob@"),
    ("+", "b" * 255 + "+"), ("#.", "a.b#c@d.e"),
]


@pytest.mark.parametrize("delims, user", STRIPPED)
def test_strip_detail_agrees_with_the_engine(rules, delims, user):
    from mailslot.recipient import strip_detail
    n, out = strip_name(rules, delims, user)
    assert out == strip_detail(user, delims)
    assert n == len(out)


def test_strip_detail_bounds(rules):
    ffi, lib, _ = rules
    out = ffi.new("char[4]")
    assert lib.ms_strip_detail(b"+", b"abcd", out, 4) == -1     # no room for the NUL
    assert lib.ms_strip_detail(b"+", b"ab+d", out, 4) == -1     # checked before cutting
    assert lib.ms_strip_detail(b"+", b"abc", out, 4) == 3
    assert lib.ms_strip_detail(b"+", ffi.NULL, out, 4) == -1


def user_names(rules, user, delims=None, fmt=None):
    ffi, lib, consts = rules
    policy = GOOD + (f"recipient_delimiter = {delims}\n" if delims else "") \
        + (f"username_format = {fmt}\n" if fmt else "")
    rc, pol, err = parse_policy(rules, policy)
    assert rc == 0, err
    size = consts["MS_USER_MAX"] + 1
    lookup, engine = ffi.new("char[]", size), ffi.new("char[]", size)
    errbuf = ffi.new("char[512]")
    rc = lib.ms_user_names(pol, user.encode(), lookup, engine, size, errbuf, 512)
    return rc, ffi.string(lookup).decode(), ffi.string(engine).decode(), \
        ffi.string(errbuf).decode()


# (recipient_delimiter, username_format, -d, name resolved, -d for the engine)
NAMES = [
    (None, None, "bob+lists", "bob+lists", "bob+lists"),      # absent: no stripping
    ("+", None, "bob+lists", "bob", "bob+lists"),
    ("+", "%Lu", "Bob+Lists", "bob", "bob+lists"),
    ("+", "%Lu", "Bob+Lists@Example.ORG", "bob@example.org", "bob+lists@example.org"),
    ("+", "%Ln", "Bob+x@Dom", "bob", "bob+x"),
    ("+", "%Ln@%Ld", "a+b@c@d", "a@d", "a+b@c@d"),            # the last '@' ends the local part
    ("+-", "%Lu", "MSLT-RBOB+x", "mslt", "mslt-rbob+x"),
    ("+", "%Lu", "bob", "bob", "bob"),
    ("+", "%Lu", "bob@ex+ample.org", "bob@ex+ample.org", "bob@ex+ample.org"),
    ("X", "%Lu", "bobXlists", "bob", "bob"),                 # %Lu eats the delimiter
    ("+", "%Ln_%Ld", "bob+x@dom", "bob_dom", "bob_dom"),     # not idempotent: no detail
    ("_+", None, "_bob+x", None, None),                      # first byte a delimiter
]


@pytest.mark.parametrize("delims, fmt, user, lookup, engine", NAMES)
def test_user_names(rules, delims, fmt, user, lookup, engine):
    rc, got_lookup, got_engine, err = user_names(rules, user, delims, fmt)
    if lookup is None:
        assert (rc, got_lookup, got_engine) == (0, "", ""), err
        return
    assert rc == 1, err
    assert (got_lookup, got_engine) == (lookup, engine)


@pytest.mark.parametrize("delims, fmt, user, lookup, engine",
                         [n for n in NAMES if n[3] is not None and n[1] is not None])
def test_user_names_agree_with_the_engine(rules, delims, fmt, user, lookup, engine):
    # The engine's find_user, with the same recipient_delimiter and
    # auth_username_format, must turn both the -d the relay got and the -d the engine
    # gets into the very name the relay resolved.
    from mailslot.recipient import strip_detail
    from mailslot.variables import expand, user_values

    def engine_rule(name):
        bare = strip_detail(name, delims or "")
        return expand(fmt, user_values(bare, None))
    assert engine_rule(user) == lookup
    # A detail is passed on only when it comes back to the same user; otherwise the
    # engine gets the resolved name itself, as before recipient_delimiter existed
    # (for a template that is not idempotent, like %Ln_%Ld, that was and is the
    # engine's own affair: its uid check refuses a different user, 75).
    if engine != lookup:
        assert engine_rule(engine) == lookup


@pytest.mark.parametrize("user, why", [
    ("+lists", "no user before the recipient_delimiter detail"),
    ("+", "no user before"),
    ("+@example.org", "no user before"),
    ("-bob", "not a valid user name"),
    ("+.x", "no user before"),
])
def test_user_names_with_no_user(rules, user, why):
    rc, lookup, engine, err = user_names(rules, user, "+", "%Lu")
    assert (rc, lookup, engine) == (0, "", "")
    assert why in err, err


def test_recipient_delimiter_is_parsed(rules):
    rc, pol, err = parse_policy(rules, GOOD)
    assert rc == 0 and rules[0].string(pol.recipient_delimiter) == b"", err
    rc, pol, err = parse_policy(rules, GOOD + "recipient_delimiter = +-_\n")
    assert rc == 0 and rules[0].string(pol.recipient_delimiter) == b"+-_", err


@pytest.mark.parametrize("value", ["@", "+@", "%", "+ -", "+\t-", "x" * 17, ""])
def test_recipient_delimiter_refused(rules, value):
    rc, _, err = parse_policy(rules, GOOD + f"recipient_delimiter = {value}\n")
    assert rc == -1
    assert err.startswith("policy-value: line 7: recipient_delimiter:"), err


# --- ranges --------------------------------------------------------------------------

@pytest.mark.parametrize("uid, inside", [(0, False), (999, False), (1000, True),
                                         (59999, True), (60000, False), (60001, True),
                                         (4294967295, False)])
def test_range_contains(rules, uid, inside):
    _, lib, _ = rules
    _, pol, _ = parse_policy(rules, GOOD)
    assert bool(lib.ms_range_contains(pol.target_uids, pol.n_target_uids, uid)) is inside


def test_range_never_contains_zero_even_if_forced(rules):
    ffi, lib, _ = rules
    ranges = ffi.new("struct ms_range[1]", [{"lo": 0, "hi": 10}])
    assert lib.ms_range_contains(ranges, 1, 0) == 0
    assert lib.ms_range_contains(ranges, 1, 5) == 1


# --- argv ----------------------------------------------------------------------------

def parse_args(rules, argv, policy=GOOD):
    ffi, lib, _ = rules
    _, pol, _ = parse_policy(rules, policy)
    keep = [ffi.new("char[]", a.encode()) for a in argv]
    arr = ffi.new("char *[]", keep + [ffi.NULL])
    args = ffi.new("struct ms_args *")
    err = ffi.new("char[512]")
    rc = lib.ms_args_parse(len(argv), arr, pol, args, err, 512)
    out = ffi.new("const char *[64]")
    n = lib.ms_args_engine_argv(args, b"/py", b"/entry", out, 64) if rc == 0 else -1
    engine = [ffi.string(out[i]).decode() for i in range(n)] if n > 0 else None
    return rc, ffi.string(err).decode(), engine


@pytest.mark.parametrize("argv, engine", [
    (["lda", "-d", "u"], ["-d", "u"]),
    (["lda", "-du", "-f", "", "-m", ""], ["-d", "u", "-f", "", "-m", ""]),
    (["lda", "-nsek", "-d", "u@example.org"], ["-d", "u@example.org", "-n", "-s", "-e", "-k"]),
    (["lda", "-f", "<>", "-a", "u+x@d", "-r", "u@d", "-d", "u"],
     ["-d", "u", "-a", "u+x@d", "-r", "u@d", "-f", "<>"]),
    (["lda", "-e", "-mINBOX/sub", "-d", "u"], ["-d", "u", "-m", "INBOX/sub", "-e"]),
])
def test_args_accepted_and_made_canonical(rules, argv, engine):
    rc, err, got = parse_args(rules, argv)
    assert rc == 0, err
    assert got == ["/py", "-I", "-S", "/entry"] + engine


@pytest.mark.parametrize("argv, rc, rule", [
    ([], 64, "usage"),
    (["lda"], 64, "usage"),
    (["lda", "-d", "u", "--"], 64, "usage"),
    (["lda", "-d", "u", "-"], 64, "usage"),
    (["lda", "-d", "-u"], 64, "usage"),
    (["lda", "-d", ".hidden"], 64, "usage"),
    (["lda", "-d", "a/b"], 64, "usage"),
    (["lda", "-d", "a:b"], 64, "usage"),
    (["lda", "-d", "a b"], 64, "usage"),
    (["lda", "-d", "x" * 257], 64, "usage"),
    (["lda", "-d", "u", "-a", ""], 64, "usage"),
    (["lda", "-d", "u", "-m", "-x"], 64, "usage"),
    (["lda", "-d", "u", "-m", "a\x7fb"], 64, "usage"),
    (["lda", "-d", "u", "-f"], 64, "usage"),
    (["lda", "-d", "u", "-c", "/x"], 77, "caller-config"),
    (["lda", "-d", "u", "-oa=b"], 77, "caller-config"),
    (["lda", "-d", "u", "-p", "/x"], 77, "caller-mail-path"),
    (["lda"] + ["-n"] * 64 + ["-d", "u"], 64, "usage"),
])
def test_args_refused(rules, argv, rc, rule):
    got_rc, err, _ = parse_args(rules, argv)
    assert got_rc == rc
    assert err.startswith(rule + ":"), err


def test_args_config_allowed_by_policy(rules):
    policy = GOOD + "caller_config = yes\ncaller_mail_path = yes\n"
    rc, err, engine = parse_args(rules, ["lda", "-d", "u", "-c", "/etc/x.yaml", "-o", "a=b",
                                         "-o", "c.d=e f", "-p", "/var/spool/m"], policy)
    assert rc == 0, err
    assert engine[4:] == ["-d", "u", "-c", "/etc/x.yaml", "-p", "/var/spool/m",
                          "-o", "a=b", "-o", "c.d=e f"]
    for bad in (["-c", "etc/x"], ["-c", "/etc/../x"], ["-o", "novalue"], ["-o", "=v"]):
        rc, err, _ = parse_args(rules, ["lda", "-d", "u"] + bad, policy)
        assert rc == 64, bad


# --- environment ---------------------------------------------------------------------

def build_env(rules, caller_env, keep=False, policy=GOOD, groups=(1001, 1002)):
    ffi, lib, consts = rules
    _, pol, _ = parse_policy(rules, policy)
    t = ffi.new("struct ms_target *")
    t.user = b"alice"
    t.uid, t.gid = 1001, 1001
    t.home = b"/home/alice"
    for i, g in enumerate(groups):
        t.groups[i] = g
    t.n_groups = len(groups)
    keep_alive = [ffi.new("char[]", e.encode()) for e in caller_env]
    env = ffi.new("char *[]", keep_alive + [ffi.NULL])
    buf = ffi.new("char[]", consts["MS_ENV_BUF"])
    out = ffi.new("char *[]", consts["MS_ENV_MAX"] + 1)
    err = ffi.new("char[512]")
    n = lib.ms_env_build(env, pol, int(keep), t, buf, consts["MS_ENV_BUF"], out,
                         consts["MS_ENV_MAX"] + 1, err, 512)
    assert n >= 0, ffi.string(err)
    assert out[n] == ffi.NULL
    return dict(ffi.string(out[i]).decode().partition("=")[::2] for i in range(n))


def test_env_fixed_part(rules):
    env = build_env(rules, ["PATH=/evil", "HOME=/root", "USER=root"])
    assert env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/alice",
                   "USER": "alice", "LOGNAME": "alice", "MAILSLOT_RELAY_USER": "alice",
                   "MAILSLOT_RELAY_HOME": "/home/alice", "MAILSLOT_RELAY_UID": "1001",
                   "MAILSLOT_RELAY_GID": "1001", "MAILSLOT_RELAY_GROUPS": "1001,1002"}


def test_env_keep_and_pass_env(rules):
    caller = ["SENDER=a@b", "LD_PRELOAD=/x.so", "FOO=1", "FOO=2", "BAR=\x01",
              "PYTHONPATH=/x", "TZ=UTC"]
    env = build_env(rules, caller, keep=True, policy=GOOD + "pass_env = FOO, BAR\n")
    assert env["SENDER"] == "a@b" and env["FOO"] == "1" and env["TZ"] == "UTC"
    assert "BAR" not in env and "LD_PRELOAD" not in env and "PYTHONPATH" not in env


def test_env_value_length_is_bounded(rules):
    env = build_env(rules, ["SENDER=" + "x" * 2000], keep=True)
    assert "SENDER" not in env


@pytest.mark.parametrize("name, forbidden", [
    ("LD_PRELOAD", True), ("LD_ANYTHING", True), ("PYTHONSTARTUP", True),
    ("PYTHONINSPECT", True), ("GCONV_PATH", True), ("LOCPATH", True), ("NLSPATH", True),
    ("TMPDIR", True), ("HOSTALIASES", True), ("RESOLV_HOST_CONF", True),
    ("GLIBC_TUNABLES", True), ("MAILSLOT_RELAY_UID", True), ("LC_ALL", True),
    ("BASH_FUNC_x%%", True), ("1ABC", True), ("A-B", True), ("", True),
    ("SENDER", False), ("MY_VAR", False),
])
def test_env_name_forbidden(rules, name, forbidden):
    _, lib, _ = rules
    assert bool(lib.ms_env_name_forbidden(name.encode())) is forbidden


# --- targets -------------------------------------------------------------------------

def find_passwd(rules, text, user):
    ffi, lib, _ = rules
    t = ffi.new("struct ms_target *")
    err = ffi.new("char[512]")
    data = text.encode()
    rc = lib.ms_passwd_file_find(data, len(data), user.encode(), t, err, 512)
    return rc, t, ffi.string(err).decode()


def test_passwd_file_find(rules):
    text = "#c\n\nother:x:5:5::/h/o\nu@d:{SHA}x:1001:1002:Gecos:/home/u::quota=1\r\n"
    rc, t, err = find_passwd(rules, text, "u@d")
    assert rc == 1, err
    assert (t.uid, t.gid, rules[0].string(t.home)) == (1001, 1002, b"/home/u")
    assert list(t.groups[0:t.n_groups]) == [1002]
    assert find_passwd(rules, text, "nobody")[0] == 0
    assert find_passwd(rules, text, "u")[0] == 0          # exact names only


@pytest.mark.parametrize("line", [
    "u:x:abc:1::/h", "u:x:1:-1::/h", "u:x:1:1::h", "u:x:1:1::", "u:x:1:1",
    "u:x:99999999999:1::/h", "u:x:1:1::/h/../etc", "u:x::1::/h",
])
def test_passwd_file_malformed_line_for_the_user(rules, line):
    rc, _, err = find_passwd(rules, line + "\n", "u")
    assert rc == -1 and err.startswith("passwd-file:"), err


def test_passwd_file_duplicate_and_nul(rules):
    assert find_passwd(rules, "u:x:1:1::/a\nu:x:2:2::/b\n", "u")[0] == -1
    assert find_passwd(rules, "u:x:1:1::/a\0\n", "u")[0] == -1
    assert find_passwd(rules, "x" * 9000 + "\nu:x:1:1::/a\n", "u")[0] == -1


@pytest.mark.parametrize("answer, ok", [
    ("OK\tuid=1001\tgid=1002\thome=/home/u x\n", True),
    ("OK\tuid=1001\tgid=1002\thome=/home/u", False),
    ("OK\tuid=1001\tgid=1002\thome=relative\n", False),
    ("OK\tuid=-1\tgid=1002\thome=/h\n", False),
    ("OK\tuid=1001\t\tgid=1002\thome=/h\n", False),
    ("OK\tgid=1002\tuid=1001\thome=/h\n", False),
    ("OK\tuid=1001\tgid=1002\thome=/h\tx=1\n", False),
    ("OK uid=1001 gid=1002 home=/h\n", False),
    ("NOTFOUND\n", False),
    ("OK\tuid=1001\tgid=1002\thome=/h\nOK\tuid=0\tgid=0\thome=/\n", False),
    ("OK\tuid=4294967295\tgid=1\thome=/h\n", False),
])
def test_lookup_answer_parse(rules, answer, ok):
    ffi, lib, _ = rules
    t = ffi.new("struct ms_target *")
    err = ffi.new("char[512]")
    data = answer.encode()
    assert (lib.ms_lookup_answer_parse(data, len(data), t, err, 512) == 0) is ok


def test_target_check(rules):
    ffi, lib, _ = rules
    _, pol, _ = parse_policy(rules, GOOD)
    t = ffi.new("struct ms_target *")
    t.user, t.home = b"u", b"/home/u"
    err = ffi.new("char[512]")
    secmail = ffi.new("unsigned long[1]", [120])

    def check(uid, gid, groups, home=b"/home/u"):
        t.uid, t.gid, t.home = uid, gid, home
        for i, g in enumerate(groups):
            t.groups[i] = g
        t.n_groups = len(groups)
        rc = lib.ms_target_check(pol, t, secmail, 1, 8, err, 512)
        return "ok" if rc == 0 else ffi.string(err).decode().split(":")[0]

    assert check(1001, 1001, [1001, 100]) == "ok"
    assert check(0, 1001, [1001]) == "target-root"
    assert check(1001, 0, [1001]) == "target-root"
    assert check(1001, 1001, [1001, 0]) == "target-root"
    assert check(999, 1001, [1001]) == "target-uid-range"
    assert check(1001, 99, [99]) == "target-gid-range"
    assert check(1001, 1001, [1001, 120]) == "target-caller-group"
    assert check(1001, 1001, [1001], b"home") == "target-home"
    assert check(1001, 1001, [1001, 8]) == "target-mail-group"


@pytest.mark.parametrize("gid, found, extra, expect", [
    (1001, [1001, 8, 27, 100], [], [1001]),                 # primary gid only
    (1001, [8, 27, 1001, 100], [100], [1001, 100]),         # primary first, then named
    (1001, [1001, 100, 100, 27], [27, 100], [1001, 100, 27]),  # resolver's order, no dups
    (1001, [], [], [1001]),                                 # a resolver without groups
    (1001, [1001], [1001], [1001]),
    (1001, [100], [200], [1001]),                           # named but not the target's
])
def test_target_groups(rules, gid, found, extra, expect):
    ffi, lib, _ = rules
    t = ffi.new("struct ms_target *")
    t.gid = gid
    for i, g in enumerate(found):
        t.groups[i] = g
    t.n_groups = len(found)
    lib.ms_target_groups(t, ffi.new("unsigned long[]", extra or [0]), len(extra))
    assert list(t.groups[0:t.n_groups]) == expect

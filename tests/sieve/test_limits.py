"""Hostile scripts fail cleanly within the limits.

Each test feeds a script built to hurt (deep nesting, a regex backtracking bomb,
an include loop, 1 MB strings, a huge MIME tree, wildcard explosions) and checks
that the run ends with the documented error, quickly, and that the delivery
still gets its answer (implicit keep).
"""

import time

from mailslot import sieve
from mailslot.sieve.diagnostics import Diagnostics
from mailslot.sieve.mail import RawMessage
from mailslot.sieve.script import compile_text, make_env
from mailslot.sieve.settings import SieveSettings

ENVELOPE = {"from": "a@example.org", "to": "b@example.com"}


def compile_errors(text):
    diag = Diagnostics()
    program = compile_text(text, "script", make_env(SieveSettings()), diag)
    return program, diag.lines


def run_text(tmp_path, text, message, settings=None):
    path = tmp_path / "hostile.sieve"
    path.write_text(text, encoding="utf-8")
    start = time.monotonic()
    res = sieve.run([str(path)], RawMessage(message), ENVELOPE, settings=settings,
                    cache=False)
    return res, time.monotonic() - start


def test_regex_bomb_is_stopped_by_the_cpu_limit(tmp_path):
    msg = b"Subject: " + b"a" * 64 + b"b\n\nx\n"
    script = ('require "regex";\n'
              'if header :regex "subject" "^(a+)+$" { discard; }\n')
    res, elapsed = run_text(tmp_path, script, msg, {"sieve_max_cpu_time": "1s"})
    assert res.status == "resource limit"
    assert res.errors == ["error: execution exceeded CPU time limit."]
    assert res.implicit_keep is True and res.actions == []
    assert elapsed < 10


def test_matches_wildcard_explosion_is_polynomial(tmp_path):
    msg = b"Subject: " + b"a" * 3000 + b"\n\nx\n"
    script = ('require "fileinto";\n'
              'if header :matches "subject" "*a*a*a*a*a*a*a*a*a*b" { discard; }\n'
              'if header :matches "subject" "*?a?*?a?*?a?*?a?*b" { discard; }\n'
              'fileinto "ok";\n')
    res, elapsed = run_text(tmp_path, script, msg)
    assert res.status == "success"
    assert res.actions == [{"type": "store", "mailbox": "ok"}]
    assert elapsed < 5


def test_deep_block_nesting_is_a_compile_error():
    text = "if true {" * 40 + "keep;" + "}" * 40
    program, lines = compile_errors(text)
    assert program is None
    assert lines[0] == ("script: line 1: error: cannot nest command blocks deeper "
                        "than 32 levels.")


def test_deep_test_nesting_is_a_compile_error():
    text = "if " + "not " * 40 + "true { keep; }"
    program, lines = compile_errors(text)
    assert program is None
    assert "cannot nest tests deeper than 32 levels" in lines[0]


def test_extreme_nesting_is_no_python_recursion_error():
    # Far beyond the limit: the parser refuses at depth 33, it never recurses on.
    text = "if " + "anyof(" * 5000 + "true" + ")" * 5000 + " { keep; }"
    program, lines = compile_errors(text)
    assert program is None
    assert "cannot nest tests deeper than 32 levels" in lines[0]


def test_one_megabyte_string_is_refused():
    text = 'require "fileinto";\nfileinto "' + "x" * (1 << 20 + 0) + 'y";\n'
    program, lines = compile_errors(text)
    assert program is None
    assert lines[0] == ("script: line 2: error: quoted string started at line 2 is "
                        "too long (longer than 1048576 bytes).")


def test_script_over_max_script_size(tmp_path):
    path = tmp_path / "big.sieve"
    path.write_text("# " + "x" * (1 << 20) + "\nkeep;\n")
    res = sieve.run([str(path)], RawMessage(b"Subject: x\n\nx\n"), ENVELOPE,
                    cache=False)
    assert res.status == "failed"
    assert res.errors[0] == "big: error: sieve script is too large (max 1048576 bytes)."
    assert res.implicit_keep is True


def test_include_loop_is_a_compile_error(tmp_path):
    (tmp_path / "sieve").mkdir()
    (tmp_path / "sieve" / "a.sieve").write_text('require "include";\ninclude "b";\n')
    (tmp_path / "sieve" / "b.sieve").write_text('require "include";\ninclude "a";\n')
    main = tmp_path / "sieve" / "main.sieve"
    main.write_text('require "include";\ninclude "a";\n')
    res = sieve.run([str(main)], RawMessage(b"Subject: x\n\nx\n"), ENVELOPE,
                    settings={"sieve_dir": str(tmp_path / "sieve")}, cache=False)
    assert res.status == "failed"
    assert "b: line 2: error: circular include." in res.errors


def test_include_depth_limit(tmp_path):
    d = tmp_path / "sieve"
    d.mkdir()
    for i in range(15):
        (d / ("s%d.sieve" % i)).write_text('require "include";\ninclude "s%d";\n'
                                            % (i + 1))
    (d / "s15.sieve").write_text("keep;\n")
    res = sieve.run([str(d / "s0.sieve")], RawMessage(b"Subject: x\n\nx\n"),
                    ENVELOPE, settings={"sieve_dir": str(d)}, cache=False)
    assert res.status == "failed"
    assert any("cannot nest includes deeper than 10 levels" in e for e in res.errors)


def test_variable_size_is_bounded(tmp_path):
    script = ('require ["variables", "fileinto"];\n'
              'set "a" "' + "x" * 3000 + '";\n'
              'set "b" "${a}${a}${a}";\n'
              'set :length "n" "${b}";\n'
              'fileinto "${n}";\n')
    res, _ = run_text(tmp_path, script, b"Subject: x\n\nx\n")
    assert res.actions == [{"type": "store", "mailbox": "4096"}]


def test_huge_mime_tree_with_nested_loops(tmp_path):
    parts = []
    for i in range(3000):
        parts.append(b"--B\nContent-Type: text/plain\n\npart %d\n" % i)
    msg = (b"Subject: many\nMIME-Version: 1.0\n"
           b"Content-Type: multipart/mixed; boundary=B\n\n" + b"".join(parts)
           + b"--B--\n")
    script = ('require ["foreverypart", "mime", "variables", "fileinto"];\n'
              'foreverypart { foreverypart { foreverypart {\n'
              '  if header :mime :contains "content-type" "nothing" { discard; }\n'
              '} } }\n'
              'fileinto "done";\n')
    res, elapsed = run_text(tmp_path, script, msg, {"sieve_max_cpu_time": "5s"})
    assert res.status in ("success", "resource limit")
    assert elapsed < 15
    if res.status == "success":
        assert res.actions == [{"type": "store", "mailbox": "done"}]


def test_too_many_redirects(tmp_path):
    script = "".join('redirect "r%d@example.net";\n' % i for i in range(5))
    res, _ = run_text(tmp_path, script, b"Subject: x\n\nx\n",
                      {"sieve_max_redirects": "4"})
    assert res.status == "failed"
    assert res.errors == ["hostile: line 5: error: number of redirect actions "
                          "exceeds policy limit (5 > 4)."]


def test_max_actions_setting(tmp_path):
    script = ('require "fileinto";\n'
              + "".join('fileinto "f%d";\n' % i for i in range(3)))
    res, _ = run_text(tmp_path, script, b"Subject: x\n\nx\n", {"sieve_max_actions": "2"})
    assert res.status == "failed"
    assert "total number of actions exceeds policy limit (3 > 2)" in res.errors[0]

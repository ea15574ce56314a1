"""Settings: Dovecot names in YAML, errors with file/line/key, -o, and the cache."""

import os

import pytest

from mailslot import config
from mailslot.errors import ConfigError, EX_TEMPFAIL, exit_code_for


def write(tmp_path, text, name="mailslot.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_when_default_file_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", str(tmp_path / "none.yaml"))
    settings = config.load_settings()
    assert settings["mail_location"] == "maildir:~/Maildir"
    assert settings["mail_fsync"] == "optimized"
    assert settings["first_valid_uid"] == 500


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load_settings(str(tmp_path / "nope.yaml"))
    assert "nope.yaml" in str(info.value)
    assert exit_code_for(info.value) == EX_TEMPFAIL


def test_values_and_types(tmp_path):
    path = write(tmp_path, "mail_location: maildir:~/Mail:LAYOUT=fs\n"
                 "lda_mailbox_autocreate: no\nfirst_valid_uid: 1000\n"
                 "sieve_max_script_size: 2M\nsieve_max_cpu_time: 1m\n"
                 "namespace:\n  inbox:\n    prefix: INBOX/\n    separator: /\n"
                 "userdb:\n  - driver: passwd-file\n    args: /etc/u\n  - driver: passwd\n")
    s = config.load_settings(path, use_cache=False)
    assert s["mail_location"] == "maildir:~/Mail:LAYOUT=fs"
    assert s["lda_mailbox_autocreate"] is False
    assert s["first_valid_uid"] == 1000
    assert s["sieve_max_script_size"] == 2 * 1024 * 1024
    assert s["sieve_max_cpu_time"] == 60
    assert s["namespace"]["inbox"] == {"prefix": "INBOX/", "separator": "/", "inbox": True}
    assert s["userdb"] == [{"driver": "passwd-file", "args": "/etc/u"},
                           {"driver": "passwd", "args": ""}]


@pytest.mark.parametrize("text,line,key", [
    ("hostname: a\nmail_locaton: x\n", 2, "mail_locaton"),
    ("\n\nmail_fsync: sometimes\n", 3, "mail_fsync"),
    ("first_valid_uid: -5\n", 1, "first_valid_uid"),
    ("first_valid_uid: many\n", 1, "first_valid_uid"),
    ("lda_mailbox_autocreate: maybe\n", 1, "lda_mailbox_autocreate"),
    ("hostname: a\nhostname: b\n", 2, "hostname"),
    ("mail_location: maildir:%z/x\n", 1, "mail_location"),
    ("namespace:\n  inbox:\n    prefx: x\n", 1, "namespace/inbox/prefx"),
    ("userdb:\n  - args: x\n", 1, "userdb"),
    ("deliver_log_format: '%{nosuchvar} %'\n", 1, "deliver_log_format"),
])
def test_errors_name_file_line_and_key(tmp_path, text, line, key):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load_settings(path, use_cache=False)
    message = str(info.value)
    assert f"{path} line {line}: " in message
    assert key in message


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "hostname: a\nmail_location: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        config.load_settings(path, use_cache=False)
    assert "invalid YAML" in str(info.value) and path in str(info.value)


def test_overrides_win_and_are_checked():
    s = config.default_settings()
    config.apply_overrides(s, [("mail_fsync", "never"), ("namespace/inbox/separator", "/"),
                               ("lda_mailbox_autocreate", "no")], source="-o")
    assert s["mail_fsync"] == "never"
    assert s["namespace"]["inbox"]["separator"] == "/"
    assert s["lda_mailbox_autocreate"] is False
    with pytest.raises(ConfigError) as info:
        config.apply_overrides(s, [("no_such", "1")], source="-o")
    assert "-o" in str(info.value) and "no_such" in str(info.value)


def test_cache_round_trip_and_invalidation(tmp_path):
    path = write(tmp_path, "hostname: 'tab\\there'\nmail_fsync: never\n"
                 "userdb:\n  - driver: passwd-file\n    args: /a b\n  - driver: passwd\n")
    first = config.load_settings(path)
    cache = tmp_path / ".mailslot.yaml.cache"
    assert cache.exists()
    assert config.load_settings(path) == first
    # A stale key (the file changed) is not used.
    with open(path, "a") as f:
        f.write("first_valid_uid: 700\n")
    assert config.load_settings(path)["first_valid_uid"] == 700


def test_forged_cache_with_bad_values_is_ignored(tmp_path):
    path = write(tmp_path, "mail_fsync: never\n")
    config.load_settings(path)
    cache = tmp_path / ".mailslot.yaml.cache"
    lines = cache.read_text().splitlines()
    lines = [l if not l.startswith("first_valid_uid\t") else "first_valid_uid\t-1"
             for l in lines]
    cache.write_text("\n".join(lines) + "\n")
    assert config.load_settings(path)["first_valid_uid"] == 500


def test_group_writable_cache_is_not_trusted(tmp_path):
    path = write(tmp_path, "mail_fsync: never\n")
    config.load_settings(path)
    cache = tmp_path / ".mailslot.yaml.cache"
    text = cache.read_text().replace("mail_fsync\tnever", "mail_fsync\talways")
    cache.write_text(text)
    os.chmod(cache, 0o666)
    assert config.load_settings(path)["mail_fsync"] == "never"
    # The same forged content, now 0644 and ours, is read: so the mode decided.
    cache.write_text(text)
    os.chmod(cache, 0o644)
    assert config.load_settings(path)["mail_fsync"] == "always"


def test_cache_read_does_not_recheck_templates(tmp_path, monkeypatch):
    path = write(tmp_path, "mail_location: maildir:/var/vmail/%d/%n\n")
    config.load_settings(path)                      # writes the cache, checking once
    calls = []
    monkeypatch.setattr(config, "_check_template", lambda *a: calls.append(a))
    assert config.load_settings(path)["mail_location"] == "maildir:/var/vmail/%d/%n"
    assert calls == []


def test_forged_cache_template_still_fails_at_expansion(tmp_path):
    path = write(tmp_path, "mail_location: maildir:~/Maildir\n")
    config.load_settings(path)
    cache = tmp_path / ".mailslot.yaml.cache"
    cache.write_text(cache.read_text().replace("maildir:~/Maildir", "maildir:%z"))
    settings = config.load_settings(path)
    with pytest.raises(ConfigError) as info:
        config.expand_user_settings(settings, {"user": "u", "home": "/h"})
    assert "mail_location" in str(info.value)


# -- several mistakes: all reported, each with its line, bounded --------------------

MANY_MISTAKES = ("hostname: a\n"                 # 1 fine
                 "mail_locaton: x\n"             # 2 unknown
                 "mail_fsync: sometimes\n"       # 3 bad enum
                 "first_valid_uid: 500\n"        # 4 fine
                 "hostname: b\n"                 # 5 duplicate
                 "lda_mailbox_autocreate: maybe\n"  # 6 bad boolean
                 "namespace:\n  inbox:\n    prefx: x\n")  # 7 unknown namespace key


def test_every_error_is_reported_with_its_line(tmp_path):
    path = write(tmp_path, MANY_MISTAKES)
    with pytest.raises(ConfigError) as info:
        config.load_settings(path, use_cache=False)
    message = str(info.value)
    assert message.startswith(f"{path}: 5 errors: "), message
    for line, key in [(2, "mail_locaton"), (3, "mail_fsync"), (5, "hostname"),
                      (6, "lda_mailbox_autocreate"), (7, "namespace/inbox/prefx")]:
        assert f"line {line}: {key}: " in message, (line, key, message)
    assert [(e.line, e.key) for e in info.value.errors] == [
        (2, "mail_locaton"), (3, "mail_fsync"), (5, "hostname"),
        (6, "lda_mailbox_autocreate"), (7, "namespace/inbox/prefx")]
    assert "\n" not in message          # one line for the MTA's log
    assert message.count(path) == 1


def test_reported_errors_are_bounded(tmp_path):
    path = write(tmp_path, "".join(f"no_such_setting_{i}: x\n" for i in range(500)))
    with pytest.raises(ConfigError) as info:
        config.load_settings(path, use_cache=False)
    message = str(info.value)
    assert len(info.value.errors) == config.MAX_REPORTED_ERRORS
    assert message.startswith(f"{path}: 500 errors: ")
    assert message.count("unknown setting") == config.MAX_REPORTED_ERRORS
    assert message.endswith(f"; and {500 - config.MAX_REPORTED_ERRORS} more")
    assert "line 20: no_such_setting_19" in message and "no_such_setting_20:" not in message


def test_every_bad_override_is_reported():
    with pytest.raises(ConfigError) as info:
        config.apply_overrides(config.default_settings(),
                               [("mail_fsync", "sometimes"), ("hostname", "ok"),
                                ("no_such", "x")], source="-o")
    message = str(info.value)
    assert message.startswith("-o: 2 errors: ")
    assert "mail_fsync: invalid value 'sometimes'" in message
    assert "no_such: unknown setting" in message


def test_a_file_with_errors_writes_no_cache(tmp_path):
    path = write(tmp_path, MANY_MISTAKES)
    with pytest.raises(ConfigError):
        config.load_settings(path)
    assert not os.path.exists(os.path.join(tmp_path, f".{os.path.basename(path)}.cache"))

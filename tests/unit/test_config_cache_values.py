"""The settings cache's values are checked when read, kind by kind: a forged or
damaged value makes the loader ignore the cache and parse the YAML again."""

import os

import pytest

from mailslot import config

YAML = ("mail_fsync: never\nlda_mailbox_autosubscribe: yes\nfirst_valid_uid: 1000\n"
        "mbox_lock_timeout: 5m\nsieve_max_script_size: 2k\nhostname: mx.example.org\n")
EXPECTED = {"mail_fsync": "never", "lda_mailbox_autosubscribe": True,
            "first_valid_uid": 1000, "mbox_lock_timeout": 300,
            "sieve_max_script_size": 2048, "hostname": "mx.example.org"}

# (setting, forged cache text): each is refused, whatever the kind.
FORGED = [
    ("first_valid_uid", "-1"),          # int: negative
    ("first_valid_uid", "12x"),         # int: not a number
    ("first_valid_uid", "\u00b2"),      # int: a digit Python's int() refuses
    ("mbox_lock_timeout", "5m"),        # time: the cache holds seconds only
    ("sieve_max_script_size", ""),      # size: empty
    ("lda_mailbox_autosubscribe", "maybe"),  # bool
    ("mail_fsync", "sometimes"),        # enum
    ("no_such_setting", "1"),           # unknown name
]


def load(tmp_path):
    path = tmp_path / "mailslot.yaml"
    if not path.exists():
        path.write_text(YAML)
    return config.load_settings(str(path))


def test_cache_round_trip_of_each_kind(tmp_path):
    first = load(tmp_path)
    assert (tmp_path / ".mailslot.yaml.cache").exists()
    second = load(tmp_path)                 # from the cache
    assert second == first
    assert {key: second[key] for key in EXPECTED} == EXPECTED


@pytest.mark.parametrize("name,text", FORGED)
def test_forged_cache_value_is_not_used(tmp_path, name, text):
    load(tmp_path)
    cache = tmp_path / ".mailslot.yaml.cache"
    lines = [line for line in cache.read_text().split("\n")
             if not line.startswith(name + "\t")]
    lines.insert(2, f"{name}\t{text}")
    cache.write_text("\n".join(lines))
    os.chmod(cache, 0o644)
    settings = load(tmp_path)
    assert {key: settings[key] for key in EXPECTED} == EXPECTED
    assert "no_such_setting" not in settings

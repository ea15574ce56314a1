"""Sieve settings: Dovecot's setting names read from the host's settings mapping.

SieveSettings.from_mapping(m) reads the sieve_* names an administrator carries
over from Dovecot (sieve_max_actions, sieve_max_redirects, sieve_max_cpu_time,
sieve_max_script_size, sieve_max_memory (mailslot's own), sieve_extensions, sieve_global_extensions,
sieve_variables_max_scope_size, sieve_variables_max_variable_size,
sieve_vacation_*, sieve_spamtest_*, sieve_virustest_*, sieve_dir,
sieve_global_dir, sieve_global, sieve_user_log, recipient_delimiter,
sieve_editheader_*, ...). m may be any mapping with .get(); values may be
strings (as in a Dovecot config) or already typed.

Errors: a malformed number or time falls back to the default and is recorded in
.problems (the runner logs them), never an exception: a typo must not make mail
bounce.
"""

from .limits import (DEFAULT_MAX_ACTIONS, DEFAULT_MAX_CPU_TIME, DEFAULT_MAX_REDIRECTS,
                     DEFAULT_MAX_SCRIPT_SIZE, DEFAULT_MAX_VARIABLE_SCOPE_SIZE,
                     DEFAULT_MAX_VARIABLE_SIZE, VACATION_DEFAULT_PERIOD,
                     VACATION_MAX_PERIOD, VACATION_MIN_PERIOD)
from .memory import DEFAULT_MAX_MEMORY

_SIZE_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_TIME_UNITS = {"": 1, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
               "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
               "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400,
               "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
               "ms": 0.001, "msec": 0.001, "msecs": 0.001}


def parse_size(value):
    if isinstance(value, int):
        return value
    text = str(value).strip().lower().replace(" ", "")
    if text.endswith("b") and len(text) > 1 and text[-2] in _SIZE_UNITS:
        text = text[:-1]
    unit = 1
    if text and text[-1] in _SIZE_UNITS:
        unit = _SIZE_UNITS[text[-1]]
        text = text[:-1]
    return int(text) * unit


def parse_time(value):
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip().lower()
    i = 0
    while i < len(text) and (text[i].isdigit() or text[i] == "."):
        i += 1
    number = float(text[:i]) if "." in text[:i] else int(text[:i])
    unit = text[i:].strip()
    return number * _TIME_UNITS[unit]


def parse_bool(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("yes", "true", "1", "on")


class SieveSettings:
    """Typed Sieve settings with Pigeonhole's defaults."""

    def __init__(self):
        self.max_script_size = DEFAULT_MAX_SCRIPT_SIZE
        self.max_actions = DEFAULT_MAX_ACTIONS
        self.max_redirects = DEFAULT_MAX_REDIRECTS
        self.max_cpu_time = DEFAULT_MAX_CPU_TIME
        self.max_memory = DEFAULT_MAX_MEMORY
        self.max_variable_size = DEFAULT_MAX_VARIABLE_SIZE
        self.max_scope_size = DEFAULT_MAX_VARIABLE_SCOPE_SIZE
        self.max_include_depth = 10
        self.max_includes = 255
        self.extensions = None          # sieve_extensions value (None: default set)
        self.global_extensions = None   # sieve_global_extensions
        self.recipient_delimiter = "+"
        self.default_mailbox = "INBOX"
        self.home = None                # the user's home (userdb), for ~ and the cache
        self.sieve_dir = None           # :personal include directory
        self.global_dir = None          # :global include directory
        self.user_log = None
        self.vacation_min_period = VACATION_MIN_PERIOD
        self.vacation_max_period = VACATION_MAX_PERIOD
        self.vacation_default_period = VACATION_DEFAULT_PERIOD
        self.vacation_use_original_recipient = False
        self.vacation_dont_check_recipient = False
        self.vacation_send_from_recipient = False
        self.vacation_to_header_ignore_envelope = False
        self.vacation_max_subject_codepoints = 256
        self.vacation_default_subject = None           # no original Subject
        self.vacation_default_subject_template = None  # "%$" is the original's
        self.spamtest_status_header = None
        self.spamtest_status_type = None
        self.spamtest_max_header = None
        self.spamtest_max_value = None
        self.virustest_status_header = None
        self.virustest_status_type = None
        self.virustest_max_header = None
        self.virustest_max_value = None
        self.spamtest_text_values = {}
        self.virustest_text_values = {}
        self.editheader_max_header_size = 2048
        self.editheader_protected = ()
        self.editheader_forbid_add = ()
        self.editheader_forbid_delete = ()
        self.duplicate_default_period = 12 * 3600
        self.duplicate_max_period = 2 * 24 * 3600
        self.user_email = None
        self.hostname = None
        self.postmaster_address = None
        self.environment = {}
        self.env_config = {}            # sieve_env_<name> (vnd.dovecot.environment)
        self.problems = []

    @classmethod
    def from_mapping(cls, m, home=None):
        if isinstance(m, SieveSettings):
            return m
        s = cls()
        s.home = home
        if m is None:
            return s
        get = m.get

        def number(key, attr, parser=parse_size):
            value = get(key)
            if value is None or value == "":
                return
            try:
                setattr(s, attr, parser(value))
            except (ValueError, KeyError, TypeError):
                s.problems.append(f"{key}: invalid value {value!r}")

        number("sieve_max_script_size", "max_script_size")
        number("sieve_max_actions", "max_actions")
        number("sieve_max_redirects", "max_redirects")
        number("sieve_max_cpu_time", "max_cpu_time", parse_time)
        number("sieve_max_memory", "max_memory")
        number("sieve_variables_max_variable_size", "max_variable_size")
        number("sieve_variables_max_scope_size", "max_scope_size")
        number("sieve_include_max_nesting_depth", "max_include_depth")
        number("sieve_include_max_includes", "max_includes")
        number("sieve_vacation_min_period", "vacation_min_period", parse_time)
        number("sieve_vacation_max_period", "vacation_max_period", parse_time)
        number("sieve_vacation_default_period", "vacation_default_period", parse_time)
        number("sieve_vacation_max_subject_codepoints",
               "vacation_max_subject_codepoints")
        number("sieve_editheader_max_header_size", "editheader_max_header_size")
        number("sieve_duplicate_default_period", "duplicate_default_period", parse_time)
        number("sieve_duplicate_max_period", "duplicate_max_period", parse_time)
        for key, attr in (("sieve_vacation_use_original_recipient",
                           "vacation_use_original_recipient"),
                          ("sieve_vacation_dont_check_recipient",
                           "vacation_dont_check_recipient"),
                          ("sieve_vacation_send_from_recipient",
                           "vacation_send_from_recipient"),
                          ("sieve_vacation_to_header_ignore_envelope",
                           "vacation_to_header_ignore_envelope")):
            if get(key) is not None:
                setattr(s, attr, parse_bool(get(key)))
        for key, attr in (("sieve_extensions", "extensions"),
                          ("sieve_global_extensions", "global_extensions"),
                          ("recipient_delimiter", "recipient_delimiter"),
                          ("sieve_dir", "sieve_dir"),
                          ("sieve_global_dir", "global_dir"),
                          ("sieve_global", "global_dir"),
                          ("sieve_user_log", "user_log"),
                          ("sieve_user_email", "user_email"),
                          ("sieve_vacation_default_subject", "vacation_default_subject"),
                          ("sieve_vacation_default_subject_template",
                           "vacation_default_subject_template"),
                          ("hostname", "hostname"),
                          ("postmaster_address", "postmaster_address"),
                          ("sieve_spamtest_status_header", "spamtest_status_header"),
                          ("sieve_spamtest_status_type", "spamtest_status_type"),
                          ("sieve_spamtest_max_header", "spamtest_max_header"),
                          ("sieve_spamtest_max_value", "spamtest_max_value"),
                          ("sieve_virustest_status_header", "virustest_status_header"),
                          ("sieve_virustest_status_type", "virustest_status_type"),
                          ("sieve_virustest_max_header", "virustest_max_header"),
                          ("sieve_virustest_max_value", "virustest_max_value")):
            value = get(key)
            if value is not None:
                setattr(s, attr, value)
        for key, attr in (("sieve_editheader_protected", "editheader_protected"),
                          ("sieve_editheader_forbid_add", "editheader_forbid_add"),
                          ("sieve_editheader_forbid_delete",
                           "editheader_forbid_delete")):
            value = get(key)
            if value:
                items = value.split() if isinstance(value, str) else list(value)
                setattr(s, attr, tuple(i.lower() for i in items))
        if s.sieve_dir is None and get("sieve"):
            from .location import parse_location
            s.sieve_dir = parse_location(get("sieve"), home)[0]
        if s.global_dir and s.global_dir.startswith("file:"):
            s.global_dir = s.global_dir[5:].split(";", 1)[0]
        for prefix, top in (("spamtest", 10), ("virustest", 5)):
            values = {}
            for n in range(top + 1):
                value = get("sieve_%s_text_value%d" % (prefix, n))
                if value:
                    values[n] = str(value)
            setattr(s, prefix + "_text_values", values)
        env = {}
        for key in list(m.keys()) if hasattr(m, "keys") else ():
            if isinstance(key, str) and key.startswith("sieve_environment_"):
                env[key[len("sieve_environment_"):]] = str(get(key))
            elif isinstance(key, str) and key.startswith("sieve_env_"):
                # vnd.dovecot.environment's "vnd.dovecot.config.<name>" items.
                s.env_config[key[len("sieve_env_"):]] = str(get(key))
        s.environment = env
        return s

    def validation_settings(self):
        """The few settings the validator consults, as a dict."""
        return {"max_redirects": self.max_redirects,
                "variables_max_scope_size": self.max_scope_size,
                "max_include_depth": self.max_include_depth,
                "max_includes": self.max_includes,
                "editheader_max_header_size": self.editheader_max_header_size,
                "editheader_protected": self.editheader_protected,
                "editheader_forbid_add": self.editheader_forbid_add,
                "editheader_forbid_delete": self.editheader_forbid_delete,
                "vacation_min_period": self.vacation_min_period,
                "vacation_max_period": self.vacation_max_period,
                "duplicate_max_period": self.duplicate_max_period,
                "spamtest_max_value": self.spamtest_max_value}

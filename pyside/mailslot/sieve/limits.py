"""Limits of the Sieve implementation, as named constants with their source.

The compile-time limits are Pigeonhole's (src/lib-sieve/sieve-limits.h, 0.5.19),
so a script that compiles with Dovecot compiles here and one that does not, does
not. The run-time limits are the defaults of the sieve_max_* settings; the
settings override them (see settings.py / SieveSettings).

Security: these bound what an untrusted script can make the delivery do: how deep
it nests, how long its strings are, how many actions it produces and how much CPU
time it may spend.
"""

# The largest number (RFC 5228 2.4.1 allows implementations to limit to 2^31-1;
# Pigeonhole uses uint64: sieve_number_t).
MAX_NUMBER = (1 << 64) - 1

# Lexer (sieve-limits.h): SIEVE_MAX_STRING_LEN, SIEVE_MAX_IDENTIFIER_LEN.
MAX_STRING_LEN = 1 << 20
MAX_IDENTIFIER_LEN = 32

# AST (sieve-limits.h).
MAX_COMMAND_ARGUMENTS = 32
MAX_BLOCK_NESTING = 32
MAX_TEST_NESTING = 32

# Script names (SIEVE_MAX_SCRIPT_NAME_LEN) and the include loop depth
# (ext-include-limits.h: EXT_INCLUDE_DEFAULT_MAX_NESTING_DEPTH, ..._MAX_INCLUDES).
MAX_SCRIPT_NAME_LEN = 256
DEFAULT_MAX_INCLUDE_DEPTH = 10
DEFAULT_MAX_INCLUDES = 255

# Runtime: match values ${0}..${31} (SIEVE_MAX_MATCH_VALUES).
MAX_MATCH_VALUES = 32

# Variables (RFC 5229; ext-variables-limits.h defaults of sieve_variables_max_*).
DEFAULT_MAX_VARIABLE_SCOPE_SIZE = 255
DEFAULT_MAX_VARIABLE_SIZE = 4096
MAX_VARIABLE_NAME_LEN = 64
MAX_VARIABLE_NAMESPACE_ELEMENTS = 10

# Settings defaults (sieve-limits.h; Pigeonhole's documentation of sieve_max_*).
DEFAULT_MAX_SCRIPT_SIZE = 1 << 20
DEFAULT_MAX_ACTIONS = 32
DEFAULT_MAX_REDIRECTS = 4
DEFAULT_MAX_CPU_TIME = 30  # seconds (SIEVE_DEFAULT_MAX_CPU_TIME_SECS)

# User log (sieve_user_log): Pigeonhole rotates it at 10 KiB and keeps the
# number of errors a compile reports bounded.
USER_LOG_MAX_SIZE = 10 * 1024
USER_LOG_MAX_ERRORS = 30

# MIME (foreverypart / mime / extracttext): how deep a message is parsed and how
# many parts are visited; beyond that the rest is treated as one leaf.
MAX_MIME_DEPTH = 32
MAX_MIME_PARTS = 10000
# extracttext :first / body text bounds a variable anyway; foreverypart nesting
# (ext-mime: EXT_FOREVERYPART_MAX_LOOP_DEPTH is SIEVE_MAX_LOOP_DEPTH = 4).
MAX_LOOP_DEPTH = 4

# Vacation (ext-vacation-common.h: sieve_vacation_default/min/max_period).
VACATION_DEFAULT_PERIOD = 7 * 24 * 3600
VACATION_MIN_PERIOD = 24 * 3600
VACATION_MAX_PERIOD = 0  # 0: no upper bound (EXT_VACATION_DEFAULT_MAX_PERIOD)
VACATION_MAX_SUBJECT_CODEPOINTS = 256

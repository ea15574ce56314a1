"""The run-time half of RFC 5228: the core's commands and tests, and those of
its two optional extensions, fileinto (4.1) and envelope (5.4).

The interpreter imports this module, not core.py, to run a compiled program, so a
delivery from a fresh compile cache never loads the compiler's definitions
(syntax, defs and core's command classes). core.py re-exports what other
extensions use from here (header_source, extract_part, make_effects, ...).
fileinto and envelope live here because nearly every script requires one of
them and a module of their own cost each delivery an import (about 0.28 M
instructions each, docs/benchmarks.md); REQUIRES keeps them out of the dispatch
table of a program that does not declare them (interpreter._dispatch_tables).

Errors: run-time errors are raised as interpreter.SieveRunError (it.error()); an
invalid (non UTF-8) folder name made at run time is one, as in Pigeonhole.
Security: header values are untrusted; parsed addresses are cached per run with
a bounded size (MAX_ADDRESS_CACHE).
"""

from ..address import AddressError, header_addresses, parse_sieve_address, \
    smtp_encode
from ..interpreter import HANDLERS, REQUIRES, TESTS, StopScript
from ..diagnostics import sanitize
from ..match import match
from ..result import DiscardAction, RedirectAction, StoreAction

# -- run time ---------------------------------------------------------------------

def header_source(it, p, decoded):
    """The header values a header/address/exists test looks at."""
    names = it.expand_list(p["headers"])
    if "mime" in p:
        from .mime import mime_header_values
        return mime_header_values(it, p, names, decoded)
    view = it.ctx.message
    values = []
    get = view.decoded_values if decoded else view.header_values
    for name in names:
        values.extend(get(name))
    if "index" in p:
        from .index import apply_index
        return apply_index(p, values)
    return values


# Distinct (address part, header value) pairs remembered per run: a filter list
# tests the same From header once per rule, and parsing it is most of the test.
MAX_ADDRESS_CACHE = 1024


def address_values(it, values, part):
    """Apply an address part to header values (see address.header_addresses)."""
    cache = it.ctx.address_cache
    out = []
    for value in values:
        key = (part, value)
        found = cache.get(key)
        if found is None:
            found = _value_addresses(it, value, part)
            if len(cache) < MAX_ADDRESS_CACHE:
                cache[key] = found
        out.extend(found)
    return out


def _value_addresses(it, value, part):
    """The address part of each address in one header value (a new list)."""
    out = []
    for item in header_addresses(value):
        if isinstance(item, str):
            if item == "" or part == "all":
                out.append(item)
            continue
        extracted = extract_part(it, item.localpart, item.domain, part)
        if extracted is not None:
            out.append(extracted)
    return out


def extract_part(it, localpart, domain, part):
    """One address part of an address (None: the part does not exist)."""
    if part == "all":
        return smtp_encode(localpart, domain)
    if part == "localpart":
        return localpart
    if part == "domain":
        return domain
    from .subaddress import DEFAULT_DELIMITER, extract_subaddress
    return extract_subaddress(localpart, part,
                              it.ctx.settings.recipient_delimiter or DEFAULT_DELIMITER)


def run_if(it, op):
    for test, block in op[2]:
        if test is None or it.test(test):
            it.run_block(block)
            return


def run_stop(it, op):
    raise StopScript()


def make_effects(it, effects):
    """Turn compiled side-effect tags into result SideEffect objects."""
    from ..result import CopyEffect, CreateEffect, FlagsEffect
    out = []
    for effect in effects:
        kind = effect[0]
        if kind == "copy":
            out.append(CopyEffect())
        elif kind == "create":
            out.append(CreateEffect())
        elif kind == "flags":
            from .imap4flags_runtime import flags_from_list
            out.append(FlagsEffect(flags_from_list(it.expand_list(effect[1]))))
        elif kind == "implicit_flags":
            out.append(FlagsEffect(list(it.result.internal_flags)))
    return out


def run_keep(it, op):
    from ..result import KeepAction
    if it.result.multiscript:
        action = KeepAction(it.location())
    else:
        action = StoreAction(it.location(), None)
    if it.ctx.message.edited:
        action.header = it.ctx.message.snapshot()
    it.result.add(it, action, make_effects(it, op[2]), keep=True)


def run_discard(it, op):
    it.result.add(it, DiscardAction(it.location()))


def run_redirect(it, op):
    target = it.expand(op[2])
    try:
        local, domain = parse_sieve_address(target)
    except AddressError as exc:
        it.error("specified redirect address '%s' is invalid: %s"
                 % (sanitize(target, 128), exc))
    if it.ctx.settings.max_redirects == 0:
        it.error("local policy prohibits the use of a redirect action")
    action = RedirectAction(it.location(), local, domain)
    if it.ctx.message.edited:
        # Pigeonhole forwards the message as editheader left it at this point.
        action.header = it.ctx.message.snapshot()
    it.result.add(it, action, make_effects(it, op[3]),
                  instance_limit=it.ctx.settings.max_redirects)


def test_address(it, op):
    p = op[2]
    values = address_values(it, header_source(it, p, False), p["part"])
    return match(it, p["spec"], values, it.expand_list(p["keys"]))


def test_header(it, op):
    p = op[2]
    values = header_source(it, p, True)
    return match(it, p["spec"], values, it.expand_list(p["keys"]))


def test_exists(it, op):
    p = op[2]
    names = it.expand_list(p["headers"])
    for name in names:
        q = dict(p)
        q["headers"] = [name]
        if not header_source(it, q, False):
            return False
    return True


def test_size(it, op):
    size = it.ctx.message.size()
    return size > op[3] if op[2] else size < op[3]


def test_not(it, op):
    return not it.test(op[2])


def test_allof(it, op):
    for t in op[2]:
        if not it.test(t):
            return False
    return True


def test_anyof(it, op):
    for t in op[2]:
        if it.test(t):
            return True
    return False


# -- fileinto (RFC 5228 4.1) -----------------------------------------------------

def valid_utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def run_fileinto(it, op):
    folder = it.expand(op[2])
    if not valid_utf8(folder):
        # Pigeonhole prints the name as it is here (no sanitizing).
        it.error("fileinto command: invalid folder name `%s' specified: invalid utf-8"
                 % folder)
    action = StoreAction(it.location(), folder)
    if it.ctx.message.edited:
        action.header = it.ctx.message.snapshot()
    it.result.add(it, action, make_effects(it, op[3]))


# -- envelope (RFC 5228 5.4) -----------------------------------------------------

def envelope_values(it, parts, addr_part):
    """The values an envelope test compares (a list shared with later tests of
    the same parts: not to be changed). Each (parts, address part) is worked out
    once per envelope, not once per rule; the cache is kept for the envelope's
    addresses as they are (the test suite's test_set changes them in place)."""
    ctx = it.ctx
    env = ctx.envelope
    state = (env, env.sender, env.recipient, env.orig_recipient, env.auth_user)
    cached = ctx.envelope_cache
    if cached is None or cached[0] != state:
        cached = ctx.envelope_cache = (state, {})
    key = (tuple(parts), addr_part)
    values = cached[1].get(key)
    if values is None:
        values = cached[1][key] = _envelope_values(it, env, parts, addr_part)
    return values


def _envelope_values(it, env, parts, addr_part):
    values = []
    for part in parts:
        low = part.lower()
        if low == "from":
            sender = env.sender
            if sender is None or sender.localpart is None:
                values.append("")
            else:
                value = extract_part(it, sender.localpart, sender.domain, addr_part)
                if value is not None:
                    values.append(value)
        elif low == "to":
            rcpt = env.orig_recipient or env.recipient
            if rcpt is not None and rcpt.localpart is not None:
                value = extract_part(it, rcpt.localpart, rcpt.domain, addr_part)
                if value is not None:
                    values.append(value)
        elif low == "auth":
            if env.auth_user:
                values.append(env.auth_user)
    return values


def test_envelope(it, op):
    p = op[2]
    values = envelope_values(it, it.expand_list(p["parts"]), p["part"])
    return match(it, p["spec"], values, it.expand_list(p["keys"]))


HANDLERS.update({"if": run_if, "stop": run_stop, "keep": run_keep,
                 "discard": run_discard, "redirect": run_redirect,
                 "fileinto": run_fileinto})
TESTS.update({"address": test_address, "header": test_header, "exists": test_exists,
              "size": test_size, "not": test_not, "allof": test_allof,
              "anyof": test_anyof, "true": lambda it, op: True,
              "false": lambda it, op: False, "envelope": test_envelope})
# Only a program that declares the extension may run these (see the docstring).
REQUIRES.update({"fileinto": "fileinto", "envelope": "envelope"})

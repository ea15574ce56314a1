"""The result of a Sieve run: the actions a script decided, and implicit keep.

Result.add() adds an action the way Pigeonhole's result does (sieve-result.c):
duplicates merge (a second fileinto to the same folder, a second redirect to the
same address, keep after fileinto "INBOX"), conflicts are run-time errors (reject
after fileinto: "reject/ereject action conflicts with other action: ..."), and
sieve_max_actions / sieve_max_redirects are enforced. Side effects (:flags, :copy,
:create) ride on their action; implicit side effects (imap4flags' internal
flags) apply to keep and to implicit keep.

print_result() renders the result in the layout of Pigeonhole's sieve-test
("Performed actions:" ... "Implicit keep:"); to_dict() gives the same as data for
--json and for the delivery engine (see __init__.py, SieveResult).

Errors: SieveRunError from interpreter for conflicts and limits.
"""

from .interpreter import SieveRunError

TRIES_DELIVER = 1
SENDS_RESPONSE = 2

SYSTEM_FLAGS = ("\\flagged", "\\answered", "\\deleted", "\\seen", "\\draft")


from .diagnostics import sanitize  # noqa: E402


# -- side effects -----------------------------------------------------------------

class SideEffect:
    name = ""
    precedence = 0
    mergeable = False

    def print_lines(self, result, action):
        """Return (lines, keep) -- keep True when it preserves implicit keep."""
        return [], None

    def to_dict(self, result):
        return {"type": self.name}


class FlagsEffect(SideEffect):
    """:flags, or imap4flags' implicit flags (flags None: the internal variable)."""

    name = "flags"
    mergeable = True

    def __init__(self, flags):
        self.flags = flags

    def resolve(self, result):
        return result.internal_flags if self.flags is None else self.flags

    def print_lines(self, result, action):
        flags = self.resolve(result)
        if not flags:
            return [], None
        return ["        + add IMAP flags:%s" % format_flags(flags)], None

    def to_dict(self, result):
        return {"type": "flags", "flags": list(self.resolve(result))}


class CopyEffect(SideEffect):
    name = "copy"

    def print_lines(self, result, action):
        return ["        + preserve implicit keep"], True


class CreateEffect(SideEffect):
    name = "create"
    precedence = 100

    def print_lines(self, result, action):
        return ["        + create mailbox if it does not exist"], None


def format_flags(flags):
    """Render flags as Pigeonhole prints them: system flags first, lower-case."""
    system = {f.lower() for f in flags if f.startswith("\\")}
    out = [f for f in SYSTEM_FLAGS if f in system]
    out += [sanitize(f, 64) for f in flags if not f.startswith("\\")]
    return "".join(" " + f for f in out)


def add_side_effect(effects, effect):
    """Insert like sieve_side_effects_list_add: no duplicates, by precedence."""
    pos = None
    for i, existing in enumerate(effects):
        if type(existing) is type(effect):
            return
        if effect.precedence > existing.precedence:
            pos = i
    if pos is None:
        effects.append(effect)
    else:
        effects.insert(pos, effect)


# -- actions ----------------------------------------------------------------------

class Action:
    kind = ""
    flags = 0

    def __init__(self, location):
        self.location = location
        self.exec_seq = 0
        self.keep = False
        self.effects = []
        self.executed = False

    def equals(self, other, result):
        return False

    def check_duplicate(self, result, other):
        """1: other is a duplicate of self (merge); 0: not; raise: error."""
        return 0

    def check_conflict(self, result, other):
        return 0

    def print_lines(self, result):
        """Return (lines, keeps_implicit)."""
        return [" * " + self.kind], False

    def to_dict(self, result):
        return {"type": self.kind}


class StoreAction(Action):
    kind = "store"
    flags = TRIES_DELIVER

    def __init__(self, location, mailbox):
        super().__init__(location)
        self.mailbox = mailbox   # None: the default mailbox (keep)

    def target(self, result):
        return result.default_mailbox if self.mailbox is None else self.mailbox

    def equals(self, other, result):
        if not isinstance(other, StoreAction):
            return False
        a, b = self.target(result), other.target(result)
        return a == b or (a.upper() == "INBOX" and b.upper() == "INBOX")

    def check_duplicate(self, result, other):
        return 1 if self.equals(other, result) else 0

    header = None   # mail.HeaderSnapshot: the edited header (editheader) when it ran

    def print_lines(self, result):
        return [" * store message in folder: %s" % sanitize(self.target(result), 128)], False

    def to_dict(self, result):
        d = {"type": "keep" if self.keep else "store", "mailbox": self.target(result)}
        _add_header(d, self.header)
        return d


class KeepAction(Action):
    """keep in a script sequence (Pigeonhole's multiscript keep: no store def)."""

    kind = "keep"
    header = None

    def print_lines(self, result):
        return [" * keep"], False

    def to_dict(self, result):
        d = {"type": "keep", "mailbox": result.default_mailbox}
        _add_header(d, self.header)
        return d


def _add_header(d, header):
    """An edited header: its fields, and the snapshot the stored copy is made of."""
    if header is not None:
        d["header_fields"] = header.fields
        d["edited_header"] = header


class RedirectAction(Action):
    kind = "redirect"
    flags = TRIES_DELIVER

    def __init__(self, location, localpart, domain):
        super().__init__(location)
        self.localpart = localpart
        self.domain = domain

    def address(self):
        from .address import smtp_encode
        return smtp_encode(self.localpart, self.domain)

    def equals(self, other, result):
        return (isinstance(other, RedirectAction) and self.localpart == other.localpart
                and self.domain.lower() == other.domain.lower())

    def check_duplicate(self, result, other):
        return 1 if self.equals(other, result) else 0

    header = None   # mail.HeaderSnapshot: the edited header when redirect ran

    def print_lines(self, result):
        return [" * redirect message to: <%s>" % self.address()], False

    def to_dict(self, result):
        d = {"type": "redirect", "address": self.address()}
        _add_header(d, self.header)
        return d


class RejectAction(Action):
    kind = "reject"
    flags = SENDS_RESPONSE

    def __init__(self, location, reason, ereject=False):
        super().__init__(location)
        self.reason = reason
        self.ereject = ereject

    def check_duplicate(self, result, other):
        if not result.is_executed(other):
            raise SieveRunError(self.location,
                                "duplicate reject/ereject action not allowed "
                                "(previously triggered one was here: %s)" % other.location)
        return 1

    def check_conflict(self, result, other):
        if other.flags & TRIES_DELIVER and not result.is_executed(other):
            raise SieveRunError(self.location,
                                "reject/ereject action conflicts with other action: "
                                "the %s action (%s) tries to deliver the message"
                                % (other.kind, other.location))
        if other.flags & SENDS_RESPONSE:
            if not result.is_executed(other):
                raise SieveRunError(self.location,
                                    "reject/ereject action conflicts with other action: "
                                    "the %s action (%s) also sends a response to the "
                                    "sender" % (other.kind, other.location))
            self.reason = None
        return 0

    def print_lines(self, result):
        if self.reason is None:
            return [" * reject message without sending a response (discard)"], False
        return [" * reject message with reason: %s" % sanitize(self.reason, 128)], False

    def to_dict(self, result):
        return {"type": "ereject" if self.ereject else "reject", "reason": self.reason}


class DiscardAction(Action):
    kind = "discard"

    def equals(self, other, result):
        return True

    def check_duplicate(self, result, other):
        return 1

    def print_lines(self, result):
        return [" * discard"], False


# -- the result -------------------------------------------------------------------

class Result:
    """The actions of one delivery's Sieve run (all its scripts)."""

    def __init__(self, default_mailbox="INBOX", max_actions=32, max_redirects=4):
        self.actions = []
        self.default_mailbox = default_mailbox
        self.max_actions = max_actions
        self.max_redirects = max_redirects
        self.exec_seq = 0
        self.internal_flags = []        # imap4flags' internal variable
        self.implicit_effects = []      # side effects for keep / implicit keep
        self.last_seq = None   # the run whose keep decides the final implicit keep
        self.multiscript = False   # keep prints as "keep" (sequence of scripts)

    def is_executed(self, action):
        return action.exec_seq < self.exec_seq

    def add(self, interp, action, effects=None, instance_limit=0, keep=False):
        """Add an action (Pigeonhole's _sieve_result_add_action)."""
        action.exec_seq = self.exec_seq
        action.keep = keep
        effects = list(effects or [])
        kaction = None
        instance_count = 0
        for existing in list(self.actions):
            existing_new = existing.exec_seq == self.exec_seq
            if keep and existing.keep:
                if not existing_new:
                    self.actions.remove(existing)
                    if kaction is None:
                        kaction = existing
                    _merge_effects(kaction, effects)
                else:
                    _merge_effects(existing, effects)
                    return existing
            elif type(existing) is type(action) and not isinstance(action, KeepAction):
                instance_count += 1
                if action.check_duplicate(self, existing) == 1:
                    if keep and not existing.keep:
                        _merge_effects(existing, effects)
                        if kaction is None:
                            existing.location = action.location
                            kaction = existing
                        else:
                            self.actions.remove(existing)
                            _merge_effects(kaction, existing.effects)
                    else:
                        _merge_effects(existing, effects)
                        return existing
            elif not isinstance(action, KeepAction) and \
                    not isinstance(existing, KeepAction):
                action.check_conflict(self, existing)
                if existing_new:
                    existing.check_conflict(self, action)
        if kaction is not None:
            target = kaction
            target.keep = keep
            target.exec_seq = self.exec_seq
            if isinstance(target, StoreAction):
                target.mailbox = None if keep else target.mailbox
            if target not in self.actions:
                self.actions.append(target)
                self._apply_implicit(target, keep)
            return target
        if self.max_actions > 0 and len(self.actions) >= self.max_actions:
            raise SieveRunError(action.location,
                                "total number of actions exceeds policy limit (%d > %d)"
                                % (len(self.actions) + 1, self.max_actions))
        if instance_limit > 0 and instance_count >= instance_limit:
            raise SieveRunError(action.location,
                                "number of %s actions exceeds policy limit (%d > %d)"
                                % (action.kind, instance_count + 1, instance_limit))
        for effect in effects:
            add_side_effect(action.effects, effect)
        self.actions.append(action)
        self._apply_implicit(action, keep)
        return action

    def _apply_implicit(self, action, keep):
        if isinstance(action, StoreAction) or keep:
            for effect in self.implicit_effects:
                add_side_effect(action.effects, effect)

    # -- reading the result ---------------------------------------------------------

    def implicit_keep(self, seq=None):
        """True unless an action (of run seq, if given) cancelled implicit keep."""
        keep = True
        for action in self.actions:
            if seq is not None and action.exec_seq != seq:
                continue
            impl = action.print_lines(self)[1]
            for effect in action.effects:
                k = effect.print_lines(self, action)[1]
                if k is not None:
                    impl = k
            keep = keep and impl
        return keep

    def print_lines(self):
        out = ["", "Performed actions:", ""]
        implicit_keep = True
        printed = False
        for action in self.actions:
            if action.exec_seq < self.exec_seq:
                continue
            lines, impl = action.print_lines(self)
            out.extend(lines)
            printed = True
            for effect in action.effects:
                elines, k = effect.print_lines(self, action)
                out.extend(elines)
                if k is not None:
                    impl = k
            implicit_keep = implicit_keep and impl
        if not printed:
            out.append("  (none)")
        out += ["", "Implicit keep:", ""]
        if implicit_keep:
            executed = any(isinstance(a, StoreAction) and a.target(self).upper() ==
                           self.default_mailbox.upper() and self.is_executed(a)
                           for a in self.actions)
            if self.multiscript:
                out.append(" * keep")
                for effect in self.implicit_effects:
                    out.extend(effect.print_lines(self, None)[0])
            elif executed:
                out.append("  (none; keep or equivalent action executed earlier)")
            else:
                out.append(" * store message in folder: %s"
                           % sanitize(self.default_mailbox, 128))
                for effect in self.implicit_effects:
                    out.extend(effect.print_lines(self, None)[0])
        else:
            out.append("  (none)")
        out.append("")
        return out

    def to_dict(self):
        actions = []
        for action in self.actions:
            d = action.to_dict(self)
            if action.effects:
                for effect in action.effects:
                    e = effect.to_dict(self)
                    if e["type"] == "flags":
                        d["flags"] = e["flags"]
                    else:
                        d[e["type"]] = True
            actions.append(d)
        if getattr(self, "discard_run", False):
            # After sieve_discard only an explicit keep delivers.
            keep = False
        else:
            keep = self.implicit_keep(self.last_seq)
        keep = keep and not any(
            isinstance(a, KeepAction) or
            isinstance(a, StoreAction) and a.equals(StoreAction(None, None), self)
            for a in self.actions)
        out = {"actions": actions, "implicit_keep": keep}
        if keep:
            flags = []
            for effect in self.implicit_effects:
                if isinstance(effect, FlagsEffect):
                    flags = list(effect.resolve(self))
            out["implicit_keep_mailbox"] = self.default_mailbox
            out["implicit_keep_flags"] = flags
        return out


def _merge_effects(action, new_effects):
    """Merge side effects into an existing action (sieve_result_side_effects_merge)."""
    for old in action.effects:
        if old.mergeable:
            for new in new_effects:
                if type(new) is type(old):
                    old.flags = new.flags
                    break
    for new in new_effects:
        if new.mergeable and not any(type(o) is type(new) for o in action.effects):
            add_side_effect(action.effects, new)

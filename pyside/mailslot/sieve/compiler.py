"""The Sieve code generator: a validated syntax tree to a program's ops.

Compiler(validator).block(nodes) turns the nodes that validator.Validator has
checked into op tuples (name, line, params...), calling each definition's
compile(compiler, node); the interpreter runs them and cache.py stores them
(JSON data only). An if/elsif/else chain becomes one "if" op whose branches skip
constant-false tests, as Pigeonhole's generator does.

Errors: a definition that cannot generate code sets compiler.failed (the
validator then reports "code generation failed"); nothing here raises for a bad
script, which validation has already refused.
"""


class Compiler:
    """Turns validated nodes into op tuples (calling each definition's compile).

    It also gives each op the source line Pigeonhole would report for it. There,
    a runtime location comes from the debug line of the op's code address, and
    commands that generate no code of their own (`if true`, `else`, a skipped
    `if false`) leave their line on the next op at that address; so an action
    after such a construct is reported at the construct's line. `pending` holds
    that line until the next op that generates code takes it.
    """

    def __init__(self, validator):
        self.v = validator
        self.failed = False
        self.pending = None

    def _mark(self, line):
        if self.pending is None:
            self.pending = line

    def _take(self, line):
        """The line of an op that generates code here; clears the pending line."""
        if self.pending is not None:
            line, self.pending = self.pending, None
        return line

    def _located(self, op):
        line = self._take(op[1])
        return op if line == op[1] else (op[0], line) + tuple(op[2:])

    def block(self, nodes):
        ops = []
        i = 0
        n = len(nodes)
        while i < n:
            node = nodes[i]
            if node.name.lower() == "if":
                i = self._if_chain(nodes, i, ops)
                continue
            if node.definition.name in ("require", "global", "import", "export"):
                i += 1
                continue
            self._mark(node.line)
            if node.definition.name == "foreverypart":
                line = self._take(node.line)
                op = node.definition.compile(self, node)
                self.pending = None   # the loop's end jump is code
                ops.append((op[0], line) + tuple(op[2:]))
            else:
                op = node.definition.compile(self, node)
                if op is not None:
                    ops.append(self._located(op))
            i += 1
        return ops

    def _if_chain(self, nodes, i, ops):
        """Gather an if/elsif/else chain into one op; return the index after it."""
        branches = []
        first_line = None
        n = len(nodes)
        j = i
        done = False
        while j < n:
            cur = nodes[j]
            lname = cur.name.lower()
            if j > i and lname not in ("elsif", "else"):
                break
            has_next = j + 1 < n and nodes[j + 1].name.lower() in ("elsif", "else")
            self._mark(cur.line)
            j += 1
            if done:
                continue     # after an unconditional branch: debug line only
            cond = cur.data.get("const", -1) if isinstance(cur.data, dict) else -1
            if lname == "else":
                cond = 1 if cond != 0 else 0
            if cond == 0:
                continue
            test = None
            if cond < 0 and cur.tests:
                line = self._take(cur.line)
                test = self.test(cur.tests[0])
                if first_line is None:
                    first_line = line
            block = self.block(cur.block or [])
            branches.append((test, block))
            if first_line is None:
                first_line = cur.line
            if cond < 0 and has_next and not _exits(cur):
                self.pending = None   # the jump to the end of the chain is code
            if cond == 1:
                done = True
        if branches:
            ops.append(("if", first_line, branches))
        return j

    def test(self, node):
        return node.definition.compile(self, node)

    def tests(self, nodes):
        return [self.test(t) for t in nodes]


def _exits(node):
    """Does the block of node end in stop or break at its top level?"""
    return any(child.definition is not None and child.definition.name in
               ("stop", "break") for child in (node.block or []))

"""The Sieve parser: tokens to a syntax tree (RFC 5228 section 8.2).

parse(text, diag, name) returns the top-level command list, or None when the
script has syntax errors (which are reported to diag). After an error the parser
recovers the way Pigeonhole's does -- it skips to the end of the broken string
list, test list, command or block, respecting nesting -- so that it reports the
same further errors and no spurious ones.

Limits: at most MAX_COMMAND_ARGUMENTS arguments a command, blocks nested at most
MAX_BLOCK_NESTING deep and tests MAX_TEST_NESTING deep; deeper input is an error,
never a Python recursion failure.
"""

from . import lexer as L
from .limits import MAX_BLOCK_NESTING, MAX_COMMAND_ARGUMENTS, MAX_TEST_NESTING
from .syntax import NUMBER, STRING, STRING_LIST, TAG, Arg, Node

# Grammatical priorities used by error recovery (sieve-parser.c).
_PRIO = {L.LCURLY: 3, L.RCURLY: 3, L.SEMICOLON: 2, L.LBRACKET: 1, L.RBRACKET: 1,
         L.LSQUARE: 0, L.RSQUARE: 0}
_BEGIN = {0: L.LSQUARE, 1: L.LBRACKET, 2: None, 3: L.LCURLY}
_END = {0: L.RSQUARE, 1: L.RBRACKET, 2: L.SEMICOLON, 3: L.RCURLY}


class _Parser:
    def __init__(self, text, diag, name):
        self.lx = L.Lexer(text, diag, name)
        self.diag = diag
        self.name = name
        self.valid = True

    def error(self, msg):
        # Pigeonhole stays silent when the lexer already complained.
        if self.lx.type != L.ERROR:
            self.diag.error(f"{self.name}: line {self.lx.token_line}", msg)
        self.valid = False

    def more_allowed(self):
        return self.valid or self.diag.more_allowed()

    def recover(self, end_token):
        lx = self.lx
        prio = _PRIO[end_token]
        nesting = 1
        while lx.type != L.EOF and _PRIO.get(lx.type, -1) <= prio:
            if lx.type == _BEGIN[prio]:
                nesting += 1
                lx.advance()
                continue
            if lx.type == _END[prio]:
                nesting -= 1
                if nesting == 0:
                    return 1
            lx.advance()
        if end_token == L.SEMICOLON and lx.type == L.LCURLY:
            return 1
        return 0

    def arguments(self, node, depth):
        lx = self.lx
        result = 1
        while result > 0:
            if not self.more_allowed():
                result = 0
                break
            t = lx.type
            if t == L.LSQUARE:
                line = lx.token_line
                items, lines = [], []
                lx.advance()
                if lx.type == L.STRING:
                    items.append(lx.value)
                    lines.append(lx.token_line)
                    lx.advance()
                    while lx.type == L.COMMA:
                        lx.advance()
                        if not self.more_allowed():
                            result = self.recover(L.RSQUARE)
                            break
                        if lx.type == L.STRING:
                            items.append(lx.value)
                            lines.append(lx.token_line)
                            lx.advance()
                        else:
                            self.error("expecting string after ',' in string list, "
                                       "but found %s" % lx.description())
                            result = self.recover(L.RSQUARE)
                            break
                else:
                    self.error("expecting string after '[' in string list, "
                               "but found %s" % lx.description())
                    result = self.recover(L.RSQUARE)
                if lx.type == L.RSQUARE:
                    lx.advance()
                else:
                    self.error("expecting ',' or end of string list ']', "
                               "but found %s" % lx.description())
                    result = self.recover(L.RSQUARE)
                    if result > 0:
                        lx.advance()
                node.args.append(Arg(STRING_LIST, None, line, items, lines))
            elif t == L.STRING:
                node.args.append(Arg(STRING, lx.value, lx.token_line))
                lx.advance()
            elif t == L.NUMBER:
                node.args.append(Arg(NUMBER, lx.value, lx.token_line))
                lx.advance()
            elif t == L.TAG:
                node.args.append(Arg(TAG, lx.value, lx.token_line))
                lx.advance()
            else:
                break
            if len(node.args) > MAX_COMMAND_ARGUMENTS:
                self.error("too many arguments for command '%s'" % node.name)
                return 0
        if result <= 0:
            return result

        if lx.type == L.IDENTIFIER:
            if depth + 1 > MAX_TEST_NESTING:
                self.error("cannot nest tests deeper than %d levels" % MAX_TEST_NESTING)
                return 0
            test = Node(lx.value, lx.token_line, True, node)
            node.tests.append(test)
            lx.advance()
            if self.arguments(test, depth + 1) <= 0:
                return 0
        elif lx.type == L.LBRACKET:
            lx.advance()
            if depth + 1 > MAX_TEST_NESTING:
                self.error("cannot nest tests deeper than %d levels" % MAX_TEST_NESTING)
                result = self.recover(L.RBRACKET)
                if result > 0:
                    lx.advance()
                return result
            node.test_list = True
            first_test = lx.type == L.IDENTIFIER
            if lx.type == L.IDENTIFIER:
                test = Node(lx.value, lx.token_line, True, node)
                node.tests.append(test)
                lx.advance()
                result = self.arguments(test, depth + 1)
                if result > 0:
                    while lx.type == L.COMMA:
                        lx.advance()
                        if not self.more_allowed():
                            result = self.recover(L.RBRACKET)
                            break
                        if lx.type == L.IDENTIFIER:
                            test = Node(lx.value, lx.token_line, True, node)
                            node.tests.append(test)
                            lx.advance()
                            result = self.arguments(test, depth + 1)
                            if result <= 0:
                                if result < 0:
                                    return result
                                result = self.recover(L.RBRACKET)
                                break
                        else:
                            self.error("expecting test identifier after ',' in test "
                                       "list, but found %s" % lx.description())
                            result = self.recover(L.RBRACKET)
                            break
                else:
                    if result < 0:
                        return result
                    result = self.recover(L.RBRACKET)
            else:
                self.error("expecting test identifier after '(' in test list, "
                           "but found %s" % lx.description())
                result = self.recover(L.RBRACKET)
            if lx.type == L.RBRACKET:
                lx.advance()
            else:
                self.error("expecting ',' or end of test list ')', but found %s"
                           % lx.description())
                result = self.recover(L.RBRACKET)
                if result > 0:
                    lx.advance()
            if not first_test:
                # Pigeonhole gives up on the script here.
                self.error("failed to accept more tests for command '%s'" % node.name)
                return -1
        return result

    def commands(self, parent, block, depth):
        lx = self.lx
        result = 1
        while result > 0 and lx.type == L.IDENTIFIER:
            if not self.more_allowed():
                result = self.recover(L.SEMICOLON)
                break
            cmd = Node(lx.value, lx.token_line, False, parent)
            block.append(cmd)
            lx.advance()
            result = self.arguments(cmd, 1)
            if result > 0 and lx.type not in (L.SEMICOLON, L.LCURLY):
                self.error("expected end of command ';' or the beginning of a "
                           "compound block '{', but found %s" % lx.description())
                result = 0
            if result == 0:
                result = self.recover(L.SEMICOLON)
            if result <= 0:
                return result
            if lx.type == L.SEMICOLON:
                lx.advance()
            else:  # LCURLY
                lx.advance()
                if depth + 1 > MAX_BLOCK_NESTING:
                    self.error("cannot nest command blocks deeper than %d levels"
                               % MAX_BLOCK_NESTING)
                    result = self.recover(L.RCURLY)
                    if result > 0:
                        lx.advance()
                    continue
                cmd.block = []
                result = self.commands(cmd, cmd.block, depth + 1)
                if result > 0:
                    if lx.type != L.RCURLY:
                        self.error("expected end of compound block '}', but found %s"
                                   % lx.description())
                        result = self.recover(L.RCURLY)
                    else:
                        lx.advance()
                else:
                    if result < 0:
                        return result
                    result = self.recover(L.RCURLY)
                    if result > 0:
                        lx.advance()
        return result

    def run(self):
        self.lx.advance()
        root = []
        if self.commands(None, root, 1) > 0 and self.valid:
            if self.lx.type != L.EOF:
                self.error("unexpected %s found at (the presumed) end of file"
                           % self.lx.description())
        else:
            self.valid = False
        return root if self.valid else None


def parse(text, diag, name):
    """Parse script text; return the list of top-level commands, or None."""
    return _Parser(text, diag, name).run()

"""The Sieve syntax tree: what the parser builds and the validator reads.

Node is a command or a test (identifier, arguments, sub-tests, block); Arg is one
argument: a string, a string list, a number or a tag. Nothing here has behaviour
beyond small accessors; it is data.
"""

STRING, STRING_LIST, NUMBER, TAG = 1, 2, 3, 4

TYPE_NAMES = {STRING: "a string", STRING_LIST: "a string list",
              NUMBER: "a number", TAG: "a tag"}


class Arg:
    """One argument. value: str, number or tag name; items/lines for a list."""

    __slots__ = ("kind", "value", "line", "items", "item_lines", "data")

    def __init__(self, kind, value, line, items=None, item_lines=None):
        self.kind = kind
        self.value = value
        self.line = line
        self.items = items
        self.item_lines = item_lines
        self.data = None

    def strings(self):
        """The argument as a list of strings (a single string is a list of one)."""
        if self.kind == STRING_LIST:
            return self.items
        return [self.value]

    def string_lines(self):
        if self.kind == STRING_LIST:
            return self.item_lines
        return [self.line]

    def type_name(self):
        return TYPE_NAMES[self.kind]


class Node:
    """A command (is_test False) or a test (is_test True)."""

    __slots__ = ("name", "line", "args", "tests", "test_list", "block",
                 "is_test", "parent", "definition", "tags", "positional",
                 "data", "exits_block", "registration")

    def __init__(self, name, line, is_test, parent):
        self.name = name
        self.line = line
        self.is_test = is_test
        self.parent = parent
        self.args = []
        self.tests = []
        self.test_list = False
        self.block = None          # list of Nodes when the command has { }
        self.definition = None
        self.tags = {}
        self.positional = []
        self.data = None
        self.exits_block = False
        self.registration = None

    def kind_name(self):
        return "test" if self.is_test else "command"

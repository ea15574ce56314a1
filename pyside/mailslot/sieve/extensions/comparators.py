"""comparator-* (RFC 4790, RFC 5228 2.7.3): make a comparator usable by name."""


def load(v, name):
    v.comparators.add(name[len("comparator-"):])
    return True

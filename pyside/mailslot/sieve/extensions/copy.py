"""copy (RFC 3894): :copy on fileinto and redirect keeps the implicit keep."""

from ..defs import TagDef


class CopyTag(TagDef):
    identifier = "copy"

    def validate(self, v, node, args, i):
        node.tags.setdefault("effects", []).append(("copy",))
        return i + 1


def load(v, name):
    tag = CopyTag()
    v.register_external_tag("redirect", tag)
    v.register_external_tag("fileinto", tag)
    return True

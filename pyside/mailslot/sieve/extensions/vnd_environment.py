"""vnd.dovecot.environment (Pigeonhole's vendor extension): more environment items
and the "env" variables namespace.

Requiring it loads environment implicitly and adds the items
"vnd.dovecot.default-mailbox" (where keep files), "vnd.dovecot.username" (the
delivery's user) and "vnd.dovecot.config.<name>" (the sieve_env_<name> setting;
see environment.py). With variables, ${env.<item>} reads any environment item;
an "_" in the name also tries "-" (${env.vnd.dovecot.default_mailbox}). The
namespace cannot be assigned to. Off by default, as in Pigeonhole.

Errors: a numeric element or an assignment is a compile error with Pigeonhole's
message. Security: items are read-only values of the delivery; nothing here
touches the environment of the process.
"""

NAMESPACE = "env"


def load(v, name):
    if not v.load_extension("environment", required=False):
        return False
    v.namespaces[NAMESPACE] = _env_namespace
    return True


def _env_namespace(v, elements, line, assignment):
    parts = []
    for element in elements[1:]:
        if isinstance(element, int):
            v.error(line, "vnd.dovecot.environment: invalid variable name within env "
                    "namespace `env.%d': encountered numeric variable name" % element)
            return None
        parts.append(element)
    variable = ".".join(parts)
    if assignment:
        v.error(line, "vnd.dovecot.environment: cannot assign to environment variable "
                "`env.%s'" % variable)
        return None
    return ("n", NAMESPACE, variable)

"""A stand-in for the engine's entry point: reports what the relay handed over.

Run by the relay (as `python3 -I -S fixture_engine.py <argv...>`), it prints one JSON
object on stdout: its ids, groups, argv, environment, open fds, working directory,
umask, signal state, capability sets, no_new_privs, RLIMIT_CORE and the message
length read from stdin. It is a real program the relay execs, not a mock.
"""
import json
import os
import resource
import sys


def status_fields():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def main():
    st = status_fields()
    umask = os.umask(0)
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[name] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass
    message = sys.stdin.buffer.read()
    # The environment as exec'd (Python may add LC_CTYPE to os.environ itself, PEP 538).
    with open("/proc/self/environ", "rb") as f:
        raw_env = [item.decode("utf-8", "replace") for item in f.read().split(b"\0") if item]
    report = {
        "argv": sys.argv,
        "executable": sys.executable,
        "isolated": sys.flags.isolated,
        "no_site": sys.flags.no_site,
        "resuid": os.getresuid(),
        "resgid": os.getresgid(),
        "groups": sorted(os.getgroups()),
        "env": dict(item.partition("=")[::2] for item in raw_env),
        "fds": fds,
        "cwd": os.getcwd(),
        "umask": umask,
        "sig_blocked": int(st["SigBlk"], 16),
        "sig_ignored": int(st["SigIgn"], 16),
        "cap_eff": int(st["CapEff"], 16),
        "cap_prm": int(st["CapPrm"], 16),
        "cap_inh": int(st["CapInh"], 16),
        "cap_amb": int(st["CapAmb"], 16),
        "no_new_privs": int(st["NoNewPrivs"]),
        "core_limit": resource.getrlimit(resource.RLIMIT_CORE),
        "message_len": len(message),
    }
    json.dump(report, sys.stdout)
    return 0


sys.exit(main())

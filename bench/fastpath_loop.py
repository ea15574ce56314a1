"""The fast path in a tight loop: wall time of the front and CPU time per delivery.

    .venv/bin/python bench/fastpath_loop.py [--runs N] [--blocks B] [--case maildir-2k]

As root: installs this tree (make install into a temp DESTDIR), prepares the case
as bench/run_bench.py does (bench/sides.py: the same settings and mailbox for
every side), builds two fronts that look for two sockets, and starts two
mailslot-handoffd of the bench user on them, one with --max-use 1 (a fresh fork
per hand-off) and one with --max-use 100. Then, as the bench user, it runs the
sides in alternating blocks of N deliveries each (dovecot-lda, mailslot-lda, the
front with max_use 1, the front with max_use 100), one delivery right after the
other, the message on a pipe. Per side it reports:

- wall: the median wall time of one delivery, as the MTA sees it (the front, or
  the LDA, from fork to exit);
- CPU: user+sys per delivery of everything the delivery ran: the process the
  MTA started (RUSAGE_CHILDREN of the loop) plus, for the fast path, the server
  and its workers (/proc/<server>/stat: its own and its reaped children's
  utime/stime, and each live worker's), taken before and after each block;
- the load average before and after the run.

CPU time is what the machine's load distorts least (BRIEF: a shared 2-core
machine); the ratios of the walls alternate block by block, so drift cancels.
"""

import argparse
import json
import os
import pwd
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
REPO = os.path.dirname(HERE)
USER = "mslt-bench"
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """Seconds of CPU of pid itself, of its reaped children, and of its live ones."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICK
    live = 0.0
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        children = []
    for child in children:
        try:
            with open(f"/proc/{child}/stat") as f:
                cf = f.read().rsplit(")", 1)[1].split()
            live += (int(cf[11]) + int(cf[12])) / TICK
        except OSError:
            pass
    return own + live


def timing(base):
    with open(os.path.join(base, "plan.json")) as f:
        plan = json.load(f)
    message = open(plan["message"], "rb").read()
    env = {"PATH": "/usr/bin:/bin", "USER": USER, "LOGNAME": USER, "HOME": base}
    sides = plan["sides"]
    servers = plan["servers"]
    results = {name: {"wall": [], "cpu_front": 0.0, "cpu_server": 0.0, "n": 0}
               for name in sides}
    for block in range(plan["blocks"]):
        for name, argv in sides.items():
            server = servers.get(name)
            before_server = proc_cpu(server) if server else 0.0
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            for _ in range(plan["runs"]):
                r, w = os.pipe()
                start = time.perf_counter()
                proc = subprocess.Popen(argv, stdin=r, stdout=subprocess.DEVNULL,
                                        env=env, cwd=base)
                os.close(r)
                os.write(w, message)
                os.close(w)
                code = proc.wait()
                results[name]["wall"].append(time.perf_counter() - start)
                if code != 0:
                    raise SystemExit(f"{name}: exit {code}")
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            # Why the pause: the worker checks its state after it sent the result;
            # its CPU belongs to this block.
            time.sleep(0.05)
            results[name]["cpu_front"] += (after.ru_utime - before.ru_utime
                                           + after.ru_stime - before.ru_stime)
            if server:
                results[name]["cpu_server"] += proc_cpu(server) - before_server
            results[name]["n"] += plan["runs"]
    out = {}
    for name, r in results.items():
        out[name] = {"wall_ms": statistics.median(r["wall"]) * 1e3,
                     "cpu_front_ms": r["cpu_front"] / r["n"] * 1e3,
                     "cpu_server_ms": r["cpu_server"] / r["n"] * 1e3,
                     "n": r["n"]}
    with open(os.path.join(base, "results.json"), "w") as f:
        json.dump(out, f)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--case", default="maildir-2k")
    parser.add_argument("--time", default=None)
    args = parser.parse_args()
    if args.time:
        return timing(args.time)
    import cases as casemod
    import sides as sidemod
    if os.getuid() != 0:
        raise SystemExit("run as root (it installs, and runs the sides as " + USER + ")")
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-r", "-M", "-d", "/nonexistent", "-s",
                        "/usr/sbin/nologin", USER], check=True)
        user = pwd.getpwnam(USER)
    base = tempfile.mkdtemp(prefix="mslt-fploop-")
    os.chmod(base, 0o755)
    try:
        inst = os.path.join(base, "inst")
        subprocess.run(["make", "-s", "install", f"DESTDIR={inst}", "PREFIX=/usr",
                        f"OUT={base}/build"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
        case = casemod.CASES_BY_NAME[args.case]
        argv = sidemod.prepare(base, case, inst)
        engine = os.path.join(inst, "usr/lib/mailslot/mailslot-lda")
        handoffd = os.path.join(inst, "usr/lib/mailslot/mailslot-handoffd")
        root = os.path.join(base, case.name)
        sides = {"dovecot-lda": argv["dovecot"], "mailslot-lda": argv["mailslot"]}
        servers = {}
        procs = []
        for use in (1, 100):
            name = f"fast path, max_use {use}"
            handoff = os.path.join(base, f"handoff-{use}")
            sock_dir = os.path.join(handoff, str(user.pw_uid))
            os.makedirs(sock_dir)
            os.chown(sock_dir, user.pw_uid, user.pw_gid)
            os.chmod(sock_dir, 0o700)
            out = os.path.join(base, f"front-{use}")
            subprocess.run(["make", "-s", "-C", os.path.join(REPO, "helper_c"),
                            f"OUT={out}", f"HANDOFF_DIR={handoff}", f"ENGINE_PATH={engine}",
                            os.path.join(out, "mailslot-lda-front")], check=True)
            # Each its own mailbox, the same settings.
            conf_dir = os.path.join(root, f"fast{use}")
            shutil.copytree(os.path.join(root, "fastpath"), conf_dir)
            conf = os.path.join(conf_dir, "mailslot.yaml")
            text = open(conf).read().replace(os.path.join(root, "fastpath"), conf_dir)
            open(conf, "w").write(text)
            subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", conf_dir],
                           check=True)
            sides[name] = [os.path.join(out, "mailslot-lda-front"), "-c", conf,
                           "-f", "a@example.org"]
            proc = subprocess.Popen(
                ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                 "--init-groups", "--", handoffd, "--max-use", str(use), "--socket",
                 os.path.join(sock_dir, "socket")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/",
                env={"PATH": "/usr/bin:/bin"})
            line = proc.stderr.readline().decode()
            if "listening" not in line:
                raise SystemExit(line + proc.stderr.read().decode())
            servers[name] = proc.pid
            procs.append(proc)
        for top, dirs, files in os.walk(root):
            for entry in dirs + files:
                os.chown(os.path.join(top, entry), user.pw_uid, user.pw_gid)
        message = os.path.join(base, "message")
        with open(message, "wb") as f:
            f.write(casemod.make_message(case.size))
        with open(os.path.join(base, "plan.json"), "w") as f:
            json.dump({"sides": sides, "servers": servers, "runs": args.runs,
                       "blocks": args.blocks, "message": message}, f)
        os.chmod(base, 0o777)
        load_before = os.getloadavg()
        subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                        "--init-groups", "--", sys.executable, "-I",
                        os.path.abspath(__file__), "--time", base], check=True,
                       env={"PATH": "/usr/bin:/bin"})
        load_after = os.getloadavg()
        for proc in procs:
            proc.terminate()
            proc.wait()
        results = json.load(open(os.path.join(base, "results.json")))
        dovecot = results["dovecot-lda"]
        print(f"{case.name}: {args.blocks} blocks x {args.runs} runs per side; load "
              f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
        print("| side | wall ms (median) | wall ratio | CPU ms: started process | "
              "CPU ms: server+workers | CPU ms total | CPU ratio |")
        print("|---|---|---|---|---|---|---|")
        for name, r in results.items():
            total = r["cpu_front_ms"] + r["cpu_server_ms"]
            dtotal = dovecot["cpu_front_ms"] + dovecot["cpu_server_ms"]
            print(f"| {name} | {r['wall_ms']:.2f} | {r['wall_ms'] / dovecot['wall_ms']:.2f} | "
                  f"{r['cpu_front_ms']:.2f} | {r['cpu_server_ms']:.2f} | {total:.2f} | "
                  f"{total / dtotal:.2f} |")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

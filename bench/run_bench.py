"""Side-by-side benchmark: mailslot-lda against Dovecot's dovecot-lda, same machine.

    make bench          # the whole matrix; writes docs/benchmarks.md and docs/bench/*.png
    make bench-quick    # about a minute, a few runs a case; writes build/bench-quick/
    .venv/bin/python bench/run_bench.py [--quick] [--cases a,b] [--out DIR] [--against REV]

Installs mailslot as a package would (make install into a temp DESTDIR), prepares
every case of bench/cases.py identically for both sides (bench/sides.py), then times
them as one unprivileged user ("mslt-bench", created when run as root: neither LDA
delivers as root), alternating the sides run by run (bench/measure.py), measures the
filesystem's durable-write ceiling, and writes the tables and plots
(bench/report.py). With --out the report goes to DIR only; without it, a full run
also rewrites the generated part of docs/benchmarks.md.
"""

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cases as casemod  # noqa: E402
import measure  # noqa: E402
import sides as sidemod  # noqa: E402

REPO = os.path.dirname(HERE)
BENCH_USER = "mslt-bench"
DOC = os.path.join(REPO, "docs", "benchmarks.md")
DOC_IMAGES = os.path.join(REPO, "docs", "bench")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few runs a case")
    parser.add_argument("--cases", default="", help="comma-separated case names")
    parser.add_argument("--out", default=None, help="write the report here only")
    parser.add_argument("--stdin", choices=("pipe", "file"), default="pipe",
                        help="the message on a pipe, as an MTA gives it (default), "
                             "or a regular file")
    parser.add_argument("--time", default=None, help=argparse.SUPPRESS)  # timing half
    parser.add_argument("--against", default=None, metavar="REV",
                        help="also time the engine of git revision REV as a reference "
                             "side (its own mailbox, the same settings), alternating "
                             "run by run: the ratio of this tree's engine to REV's")
    parser.add_argument("--lmtp", action="store_true",
                        help="the LMTP comparison only (bench/lmtp_bench.py; as root)")
    parser.add_argument("--lmtp-processes", default="auto", metavar="N",
                        help="mailslot-lmtpd's lmtp_processes in --lmtp (default auto)")
    parser.add_argument("--lmtp-generator", choices=("c", "python"), default="c",
                        help="the load generator of --lmtp: bench/lmtp_load.c compiled "
                             "with cc -O2 (default; Python if there is no compiler) or "
                             "the Python one, a thread per connection in the bench")
    return parser.parse_args(argv)


def selected_cases(spec):
    if not spec:
        return list(casemod.CASES)
    unknown = [n for n in spec.split(",") if n not in casemod.CASES_BY_NAME]
    if unknown:
        raise SystemExit(f"bench: unknown case(s) {', '.join(unknown)} "
                         f"(known: {', '.join(casemod.CASES_BY_NAME)})")
    return [casemod.CASES_BY_NAME[n] for n in spec.split(",")]


def timing_half(base):
    """Run as the bench user: time every prepared case, write base/results.json."""
    with open(os.path.join(base, "plan.json")) as f:
        plan = json.load(f)
    user = pwd.getpwuid(os.getuid())
    env = {"PATH": "/usr/bin:/bin", "USER": user.pw_name, "LOGNAME": user.pw_name,
           "HOME": base}
    out = []
    server = start_fast_path_server(base, plan)
    try:
        out = time_cases(base, plan, env)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    sys.stderr.write("physical limit: durable create loop\n")
    physical = measure.physical_limit(os.path.join(base, "physical"),
                                      seconds=1.0 if plan["quick"] else 5.0)
    with open(os.path.join(base, "results.json"), "w") as f:
        json.dump({"cases": out, "physical_per_s": physical}, f)
    return 0


def start_fast_path_server(base, plan):
    """mailslot-handoffd of the bench user, for the "mailslot fast path" side."""
    if not any(sidemod.FAST_SIDE in entry["argv"] for entry in plan["cases"]):
        return None
    directory = os.path.join(sidemod.fast_path_socket_root(base), str(os.getuid()))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    socket_path = os.path.join(directory, "socket")
    server = subprocess.Popen([plan["handoffd"], "--socket", socket_path],
                              stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
    line = server.stderr.readline().decode()
    if "listening" not in line:
        raise SystemExit(f"bench: mailslot-handoffd did not start: {line}")
    return server


def time_cases(base, plan, env):
    out = []
    for entry in plan["cases"]:
        case = casemod.CASES_BY_NAME[entry["name"]]
        runs = case.runs(plan["quick"])
        sys.stderr.write(f"{case.name}: {len(entry['argv'])} processes, {runs} runs each\n")
        samples = measure.run_case(entry["argv"], entry["message"], env, runs,
                                   warmup=1 if plan["quick"] or case.size > 2**20 else 3,
                                   progress=measure.progress_printer(case.name),
                                   stdin_kind=plan["stdin"])
        summaries = {side: measure.summarize(s, measure.peak_rss(
                         entry["argv"][side], entry["message"], env, base, plan["stdin"]))
                     for side, s in samples.items()}
        result = {"name": case.name, "fmt": case.fmt, "size": case.size,
                  "target": casemod.TARGETS.get(case.name), "sides": summaries,
                  "ratio": measure.paired_ratio(samples["mailslot"], samples["dovecot"]),
                  "ref_ratios": {side: measure.paired_ratio(s, samples["dovecot"])
                                 for side, s in samples.items()
                                 if side not in ("mailslot", "dovecot")}}
        if plan.get("against"):
            # This tree against REV, run by run: the cost or gain of the changes.
            result["against"] = {"rev": plan["against"], "ratio": measure.paired_ratio(
                samples["mailslot"], samples[sidemod.against_side(plan["against"])])}
        out.append(result)
        sys.stderr.write(f"  {case.name}: ratio {result['ratio']:.2f}\n")
    return out


def install_revision(rev, base):
    """Lay out the engine of git revision rev as `make install` would (the package
    under lib/mailslot/python, byte-compiled, and its mailslot-lda entry) under
    base/against; return the entry's path. Only the Python engine: the side it makes
    is the ordinary pipe path."""
    root = os.path.join(base, "against", "usr", "lib", "mailslot")
    os.makedirs(os.path.join(root, "python"))
    archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", rev,
                              "pyside/mailslot", "pyside/entry/mailslot-lda"],
                             check=True, capture_output=True).stdout
    unpack = os.path.join(base, "against", "src")
    os.makedirs(unpack)
    subprocess.run(["tar", "-x", "-C", unpack], input=archive, check=True)
    shutil.move(os.path.join(unpack, "pyside", "mailslot"), os.path.join(root, "python"))
    entry = os.path.join(root, "mailslot-lda")
    shutil.copy(os.path.join(unpack, "pyside", "entry", "mailslot-lda"), entry)
    os.chmod(entry, 0o755)
    # Why: delivery users cannot write __pycache__ there, as in a real installation.
    subprocess.run(["/usr/bin/python3", "-m", "compileall", "-q", "-d",
                    "/usr/lib/mailslot/python", os.path.join(root, "python")], check=True)
    subprocess.run(["chmod", "-R", "a+rX", os.path.join(base, "against")], check=True)
    return entry


def bench_user():
    try:
        return pwd.getpwnam(BENCH_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        BENCH_USER], check=True)
        return pwd.getpwnam(BENCH_USER)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.time:
        return timing_half(args.time)
    if not os.path.exists(sidemod.DOVECOT_LDA):
        raise SystemExit("bench: dovecot-lda not found (apt-get install dovecot-core)")
    if args.lmtp:
        return lmtp_main(args)
    chosen = selected_cases(args.cases)
    base = tempfile.mkdtemp(prefix="mailslot-bench-")
    os.chmod(base, 0o755)
    try:
        inst = os.path.join(base, "inst")
        sys.stderr.write("installing mailslot into a temporary DESTDIR\n")
        subprocess.run(["make", "-s", "install", f"DESTDIR={inst}", "PREFIX=/usr"],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        sidemod.fast_path_build(base, inst, REPO)
        plan = {"quick": args.quick, "stdin": args.stdin, "cases": [],
                "handoffd": os.path.join(inst, "usr/lib/mailslot/mailslot-handoffd"),
                "against": args.against}
        against = None
        if args.against:
            against = (args.against, install_revision(args.against, base))
        for case in chosen:
            sys.stderr.write(f"preparing {case.name}\n")
            argv = sidemod.prepare(base, case, inst, against)
            message = os.path.join(base, case.name, "message.eml")
            with open(message, "wb") as f:
                f.write(casemod.make_message(case.size))
            os.chmod(message, 0o644)
            plan["cases"].append({"name": case.name, "argv": argv, "message": message})
        os.makedirs(os.path.join(base, "physical"))
        with open(os.path.join(base, "plan.json"), "w") as f:
            json.dump(plan, f)
        timing = [sys.executable, os.path.abspath(__file__), "--time", base]
        if os.geteuid() == 0:
            user = bench_user()
            owned = [os.path.join(base, "physical"), sidemod.fast_path_socket_root(base)]
            for case in chosen:
                owned += sidemod.case_dirs(base, case, against=bool(args.against))
            for path in owned:
                subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", path],
                               check=True)
            os.chown(base, user.pw_uid, user.pw_gid)  # results.json
            timing = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                      "--clear-groups", "--"] + timing
        code = subprocess.run(timing, env={"PATH": "/usr/bin:/bin"}).returncode
        if code != 0:
            return code
        with open(os.path.join(base, "results.json")) as f:
            results = json.load(f)
        from report import describe_machine, update_doc, write_report

        counts = sorted({(c.runs(args.quick)) for c in chosen}, reverse=True)
        results.update({
            "machine": describe_machine(base), "quick": args.quick,
            "date": time.strftime("%Y-%m-%d"),
            "runs_note": ("quick run (make bench-quick)" if args.quick else "make bench")
            + f", {'/'.join(map(str, counts))} alternating runs a case by size, the "
            + ("message on a pipe as an MTA's pipe transport gives it" if args.stdin == "pipe"
               else "message in a regular file on stdin")})
        out_dir = args.out or (os.path.join(REPO, "build", "bench-quick") if args.quick
                               else DOC_IMAGES)
        prefix = "bench/" if out_dir == DOC_IMAGES else ""
        text = write_report(results, out_dir, image_prefix=prefix)
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        if args.out is None and not args.quick:
            update_doc(DOC, text)
            sys.stderr.write(f"wrote {DOC} and {out_dir}/*.png\n")
        else:
            sys.stderr.write(f"wrote {out_dir}/results.md and plots\n")
        sys.stdout.write(text)
        return 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


def lmtp_main(args):
    """The LMTP comparison: prints the table for docs/benchmarks.md (hand-placed
    outside the generated part) and writes results to --out or build/bench-lmtp/."""
    import lmtp_bench
    if os.geteuid() != 0:
        raise SystemExit("bench: --lmtp runs Dovecot's master and needs root")
    base = tempfile.mkdtemp(prefix="mailslot-bench-lmtp-")
    os.chmod(base, 0o755)
    try:
        inst = os.path.join(base, "inst")
        subprocess.run(["make", "-s", "install", f"DESTDIR={inst}", "PREFIX=/usr"],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        user = bench_user()
        results = lmtp_bench.run(base, inst, user.pw_uid, user.pw_gid, quick=args.quick,
                                   processes=args.lmtp_processes,
                                   generator=args.lmtp_generator)
        out_dir = args.out or os.path.join(REPO, "build", "bench-lmtp")
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        sys.stdout.write(lmtp_bench.report(results))
        return 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

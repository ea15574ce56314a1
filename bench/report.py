"""The benchmark report: Markdown tables, PNG plots, the machine they were measured on.

write_report(results, out_dir) writes out_dir/results.md (a Markdown fragment) and
out_dir/*.png (matplotlib, Agg backend: no display needed); update_doc() puts that
fragment into docs/benchmarks.md between the BEGIN/END markers, keeping the
hand-written analysis around it.

results is a dict: {"machine": {...}, "quick": bool, "runs_note": str,
"physical_per_s": float, "cases": [{"name", "fmt", "size", "target", "sides":
{side: summary}, "ratio": float}]}.
"""

import os
import platform
import subprocess

BEGIN = "<!-- bench:begin (written by bench/run_bench.py; edit outside the markers) -->"
END = "<!-- bench:end -->"
SIDE_LABELS = {"mailslot": "mailslot-lda", "dovecot": "dovecot-lda"}


def describe_machine(directory):
    """What the figures were measured on: CPU, cores, memory, kernel, filesystem."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    fs = subprocess.run(["stat", "-f", "-c", "%T", directory], capture_output=True,
                        text=True).stdout.strip() or "unknown"
    debian = ""
    if os.path.exists("/etc/debian_version"):
        with open("/etc/debian_version") as f:
            debian = f.read().strip()
    dovecot = subprocess.run(["dovecot", "--version"], capture_output=True,
                             text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "filesystem": fs, "debian": debian,
            "python": platform.python_version(), "dovecot": dovecot}


def _size(n):
    for unit, div in (("MB", 2**20), ("KB", 2**10)):
        if n >= div:
            return f"{n // div} {unit}"
    return f"{n} B"


def _timing(summary):
    return (f"{summary['median_ms']:.2f} ({summary['p10_ms']:.2f}–"
            f"{summary['p90_ms']:.2f})")


def markdown(results, image_prefix=""):
    m = results["machine"]
    out = [f"Measured {results['date']} on {m['cpu']}, {m['cores']} cores, "
           f"{m['memory_gib']} GiB, {m['filesystem']} (kernel {m['kernel']}, Debian "
           f"{m['debian']}, Python {m['python']}, Dovecot {m['dovecot']}); "
           f"{results['runs_note']}. Times are wall-clock milliseconds from fork to "
           "reap, median (10th–90th percentile); the ratio is the median of the "
           "run-by-run ratios of alternating runs (A B A B ...); peak RSS is "
           "one more run's under GNU time (`%M`, children included).", "",
           "| case | runs | mailslot-lda ms | dovecot-lda ms | ratio | target | "
           "peak RSS mailslot / dovecot (MiB) |", "|---|---|---|---|---|---|---|"]
    for case in results["cases"]:
        ms, dc = case["sides"]["mailslot"], case["sides"]["dovecot"]
        target = f"≤ {case['target']}" if case.get("target") else "-"
        met = ""
        if case.get("target"):
            met = " ✓" if case["ratio"] <= case["target"] else " ✗"
        out.append(f"| {case['name']} | {ms['runs']} | {_timing(ms)} | {_timing(dc)} | "
                   f"**{case['ratio']:.2f}**{met} | {target} | "
                   f"{ms['peak_rss_kib'] / 1024:.1f} / {dc['peak_rss_kib'] / 1024:.1f} |")
    refs = [c for c in results["cases"] if len(c["sides"]) > 2]
    if refs:
        out += ["", "Reference processes, alternating with the two LDAs on the same case:",
                "", "| case | process | ms | ratio to dovecot-lda |", "|---|---|---|---|"]
        for case in refs:
            for side, summary in case["sides"].items():
                if side in SIDE_LABELS:
                    continue
                out.append(f"| {case['name']} | {side} | {_timing(summary)} | "
                           f"{case['ref_ratios'][side]:.2f} |")
    compared = [c for c in results["cases"] if c.get("against")]
    if compared:
        rev = compared[0]["against"]["rev"]
        out += ["", f"This tree's engine against the engine of `{rev}` (`--against {rev}`), "
                "alternating run by run (below 1: this tree is faster):", "",
                f"| case | mailslot-lda / mailslot @{rev} |", "|---|---|"]
        out += [f"| {c['name']} | {c['against']['ratio']:.2f} |" for c in compared]
    if results.get("physical_per_s"):
        per = results["physical_per_s"]
        out += ["", f"Physical limit: **{per:.0f} durable 2 KB creates per second** "
                f"({1000 / per:.2f} ms each: create, write, fsync, rename, directory "
                "fsync, in one process with no start-up) on the same filesystem, the "
                "ceiling for any LDA here; the LMTP plot will draw it as its ceiling."]
    out += ["", f"![ratio per case]({image_prefix}ratios.png)",
            f"![median time per case]({image_prefix}times.png)",
            f"![peak memory per case]({image_prefix}memory.png)", "",
            "Reproduce: `make bench` (all figures; `make bench-quick` for a one-minute "
            "run), or one case: `.venv/bin/python bench/run_bench.py --cases NAME "
            "--out DIR`."]
    return "\n".join(out) + "\n"


def plot(results, out_dir):
    """Write ratios.png, times.png and memory.png into out_dir."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = results["cases"]
    names = [c["name"] for c in cases]

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(cases) + 1.5))
    ratios = [c["ratio"] for c in cases]
    colors = ["tab:green" if c.get("target") and c["ratio"] <= c["target"] else
              "tab:red" if c.get("target") else "tab:gray" for c in cases]
    ax.barh(names, ratios, color=colors)
    for i, c in enumerate(cases):
        if c.get("target"):
            ax.plot([c["target"]] * 2, [i - 0.4, i + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="tab:blue", linestyle="--", label="dovecot-lda = 1.0")
    ax.invert_yaxis()
    ax.set_xlabel("mailslot-lda / dovecot-lda (median of paired runs); black: target")
    ax.legend(loc="lower right")
    ax.set_title("Pipe delivery time, ratio to dovecot-lda")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "ratios.png"), dpi=100)
    plt.close(fig)

    for key, filename, label, scale in (
            ("median_ms", "times.png", "median wall time (ms, log scale)", None),
            ("peak_rss_kib", "memory.png", "peak RSS (MiB)", 1024)):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        width = 0.4
        xs = range(len(cases))
        for offset, side in ((-width / 2, "mailslot"), (width / 2, "dovecot")):
            values = [c["sides"][side][key] / (scale or 1) for c in cases]
            kwargs = {}
            if key == "median_ms":
                kwargs["yerr"] = [[c["sides"][side]["median_ms"] - c["sides"][side]["p10_ms"]
                                   for c in cases],
                                  [c["sides"][side]["p90_ms"] - c["sides"][side]["median_ms"]
                                   for c in cases]]
            ax.bar([x + offset for x in xs], values, width, label=SIDE_LABELS[side],
                   **kwargs)
        if key == "median_ms":
            ax.set_yscale("log")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=35, ha="right")
        ax.set_ylabel(label)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, filename), dpi=100)
        plt.close(fig)


def write_report(results, out_dir, image_prefix=""):
    """Write results.md and the plots into out_dir; return the Markdown text."""
    os.makedirs(out_dir, exist_ok=True)
    text = markdown(results, image_prefix)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(text)
    plot(results, out_dir)
    return text


def update_doc(doc_path, fragment):
    """Replace the text between BEGIN and END in doc_path with fragment."""
    with open(doc_path) as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{doc_path}: no {BEGIN!r} ... {END!r} markers to write between")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(doc_path, "w") as f:
        f.write(head + BEGIN + "\n" + fragment + END + tail)

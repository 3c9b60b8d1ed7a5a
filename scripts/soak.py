#!/usr/bin/env python3
"""Soak run: a devnet under a steady workload, with every node's memory and open files
sampled, to show that nothing grows without bound.

Usage: scripts/soak.py [--minutes 30] [--members a,b,c] [--every 60] [--out soak.csv]
       [--binary target/release/aiguillage]

It starts `aiguillage devnet --keep-running` (real node processes on loopback), then files a
project and submits a small GPU job at a rotating member every couple of seconds, accepts
referrals that wait for an operator, ends the journeys (a project kept at home, a referral
handed over to its target) as advisers do, and every `--every` seconds records per node its
resident memory (VmRSS, and of it the anonymous part: heap and stacks), open file
descriptors, threads, the records it holds in memory
(projects, referrals and jobs, from `status`) and the size of its store on disk. At the end it prints, per node,
the first and last samples and the growth, and stops the devnet. Ctrl-C or SIGTERM ends the
run early the same way, with what was sampled so far.
"""

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(binary, net, node, *args):
    out = subprocess.run(
        [binary, *args, "--json", "--devnet-dir", net, "--node", node],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode != 0:
        return None
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return None


def sample(pid):
    """(VmRSS, open fds, threads, RssAnon, RssFile): anonymous memory is the heap and the
    stacks; file-backed memory is mostly the binary's own pages as code runs for the first
    time, bounded by its size."""
    rss = threads = anon = filed = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024.0
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) / 1024.0
                elif line.startswith("RssFile:"):
                    filed = int(line.split()[1]) / 1024.0
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    return rss, fds, threads, anon, filed


def median_slope(rows, col, after_s):
    """The median over the nodes of each node's least-squares slope of `col`, per hour,
    over the samples taken after `after_s` seconds (nan with fewer than two)."""
    slopes = []
    for m in sorted({r["member"] for r in rows}):
        pts = [(r["t_s"] / 3600.0, r[col]) for r in rows if r["member"] == m and r["t_s"] >= after_s]
        if len(pts) < 2:
            continue
        mt = sum(t for t, _ in pts) / len(pts)
        mv = sum(v for _, v in pts) / len(pts)
        var = sum((t - mt) ** 2 for t, _ in pts)
        if var > 0:
            slopes.append(sum((t - mt) * (v - mv) for t, v in pts) / var)
    slopes.sort()
    return slopes[len(slopes) // 2] if slopes else float("nan")


def interrupt(*_):
    raise KeyboardInterrupt


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--members", default="")
    p.add_argument("--every", type=float, default=60.0)
    p.add_argument("--out", default="soak.csv")
    p.add_argument("--binary", default=os.path.join(ROOT, "target/release/aiguillage"))
    p.add_argument("--warm-up", type=float, default=5.0,
                   help="minutes left out of the per-hour slopes printed at the end")
    p.add_argument("--keep-open", action="store_true",
                   help="leave every journey open (as before journeys were ended here): "
                        "then nothing a project made ever finishes, and memory grows with them")
    a = p.parse_args()
    # Stopped by `timeout`, `kill` or a service manager: end the run as Ctrl-C does, stopping
    # the devnet and writing what was sampled.
    signal.signal(signal.SIGTERM, interrupt)
    if not os.access(a.binary, os.X_OK):
        sys.exit(f"{a.binary} not found: build it first with `cargo build --release`")

    work = tempfile.mkdtemp(prefix="aiguillage-soak-")
    net = os.path.join(work, "net")
    cmd = [a.binary, "devnet", "--projects", "0", "--jobs", "0", "--keep-running",
           "--dir", net, "--config-dir", os.path.join(ROOT, "config")]
    if a.members:
        cmd += ["--members", a.members]
    devnet = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env={**os.environ, "RUST_LOG": "warn"})
    for line in devnet.stdout:
        if "keeps running" in line:
            break
    else:
        sys.exit("the devnet did not come up")
    members = sorted(d for d in os.listdir(net) if os.path.exists(os.path.join(net, d, "run.json")))
    pids = {}
    for m in members:
        with open(os.path.join(net, m, "run.json")) as f:
            pids[m] = json.load(f)["pid"]
    print(f"soak: {len(members)} nodes for {a.minutes} min, sampling every {a.every} s -> {a.out}",
          flush=True)

    examples = [os.path.join(ROOT, "config/examples", e) for e in
                ("project-health-lu.toml", "project-finance-lu.toml", "project-defence-lu.toml")]
    job = os.path.join(work, "job.toml")
    with open(job, "w") as f:
        f.write('gpus = 1\ntime_limit_s = 60\ncommand = ["sh", "-c", "sleep 2"]\n')

    rows = []
    start = time.time()
    end = start + a.minutes * 60
    next_sample = start
    n = filed = submitted = decided = ended = 0
    try:
        while True:
            now = time.time()
            if now >= next_sample:
                gone = [m for m in members if not (sample(pids[m]) or (None,))[0]]
                if gone:
                    # A node that exited (a zombie has no VmRSS) ends the run; what was
                    # sampled until then is still written.
                    print(f"soak: {', '.join(gone)} exited after {round(now - start)} s; "
                          f"see its node.log in {net}", file=sys.stderr, flush=True)
                    end = now
                for m in members:
                    s = sample(pids[m])
                    if s and s[0] is not None:
                        # What the node holds in memory, to tell live records from the rest.
                        st = cli(a.binary, net, m, "status") or {}
                        held = sum(st.get(k, 0) or 0 for k in
                                   ("projects", "referrals_out", "referrals_in", "jobs", "jobs_hosted"))
                        store = sum(e.stat().st_size for e in os.scandir(os.path.join(net, m, "db"))
                                    if e.is_file())
                        rows.append({"t_s": round(now - start), "member": m, "rss_mib": round(s[0], 1),
                                     "fds": s[1], "threads": s[2], "held": held,
                                     "store_mib": round(store / 1048576, 1),
                                     "anon_mib": round(s[3] or 0, 1), "file_mib": round(s[4] or 0, 1)})
                next_sample += a.every
                print(f"soak: {round(now - start)} s, filed {filed}, jobs {submitted}, "
                      f"decisions {decided}, journeys ended {ended}", flush=True)
            if now >= end:
                break
            at = members[n % len(members)]
            filing = cli(a.binary, net, at, "project", "file", examples[n % len(examples)])
            if filing is not None:
                filed += 1
                # The journey of a project kept here ends, as real ones do; one referred
                # ends at its target (below).
                if not a.keep_open and not filing.get("referral") and filing.get("project"):
                    if cli(a.binary, net, at, "project", "progress", filing["project"],
                           "--step", "production", "--state", "completed") is not None:
                        ended += 1
            if cli(a.binary, net, at, "job", "submit", job) is not None:
                submitted += 1
            # Play the operators: accept whatever waits for a decision somewhere.
            target = members[(n * 7 + 3) % len(members)]
            for r in cli(a.binary, net, target, "referral", "list") or []:
                state = r.get("state")
                state = state.get("state") if isinstance(state, dict) else state
                if r.get("direction") == "in" and state == "awaiting_decision":
                    if cli(a.binary, net, target, "referral", "accept", r["referral"]) is not None:
                        decided += 1
                elif r.get("direction") == "in" and state == "handed_over" and not a.keep_open:
                    if cli(a.binary, net, target, "referral", "progress", r["referral"],
                           "--step", "production", "--state", "completed") is not None:
                        ended += 1
            n += 1
            time.sleep(2)
    except KeyboardInterrupt:
        print(f"soak: stopped after {time.time() - start:.0f} s; writing what was sampled", flush=True)
    finally:
        devnet.send_signal(signal.SIGINT)
        devnet.wait(timeout=60)

    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["t_s", "member", "rss_mib", "fds", "threads", "held",
                                          "store_mib", "anon_mib", "file_mib"])
        w.writeheader()
        w.writerows(rows)
    first = {}
    last = {}
    for r in rows:
        first.setdefault(r["member"], r)
        last[r["member"]] = r
    print(f"{'member':<16} {'rss start':>10} {'rss end':>10} {'anon start':>10} "
          f"{'anon end':>9} {'fds start':>10} {'fds end':>8}")
    for m in members:
        if m in first:
            print(f"{m:<16} {first[m]['rss_mib']:>10} {last[m]['rss_mib']:>10} "
                  f"{first[m]['anon_mib']:>10} {last[m]['anon_mib']:>9} "
                  f"{first[m]['fds']:>10} {last[m]['fds']:>8}")
    print(f"per hour after minute {a.warm_up:g} (least-squares slope per node, median of the nodes): "
          + ", ".join(f"{col} {median_slope(rows, col, a.warm_up * 60):+.2f} MiB"
                      for col in ("rss_mib", "anon_mib", "store_mib")))
    rss_first = sorted(first[m]["rss_mib"] for m in first)
    rss_last = sorted(last[m]["rss_mib"] for m in last)
    print(f"median RSS {rss_first[len(rss_first) // 2]} -> {rss_last[len(rss_last) // 2]} MiB; "
          f"filed {filed} projects, {submitted} jobs, {decided} operator decisions, "
          f"{ended} journeys ended "
          f"in {round(time.time() - start)} s")


if __name__ == "__main__":
    main()

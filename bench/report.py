"""Writes docs/PERFORMANCE.md and docs/performance.png from the outputs bench/report collected.

Usage: report.py OUT_DIR BENCH... (OUT_DIR holds <bench>.txt and machine.txt).
Every figure comes from the outputs of one run; nothing here is typed in by hand except the
aims (from the issue that set them) and the notes on why a figure is what it is.
"""

import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LINE = re.compile(
    r"^(?P<indent>\s*)(?P<name>.+?)\s+(?P<rate>\d+) req/s\s+p50\s+(?P<p50>[\d.]+) ms\s+p99\s+(?P<p99>[\d.]+) ms"
)
RATIO = re.compile(r"^\s*(?P<what>[\w/ ]+?) = (?P<ratio>[\d.]+)\s*$")
JOBS = re.compile(r"(?m)^(?P<backend>\w+)\s+enqueue\s+(?P<enqueue>\d+) jobs/s\s+complete\s+(?P<complete>\d+) distinct jobs/s\s+\(4 workers × (?P<slots>\d+)")
ARGON = re.compile(r"=\s*(?P<pct>\d+) % of the argon2 bound, (?P<parallel>\d+) % of (?P<cores>\d+) hashes at a time")
PARALLEL = re.compile(r"argon2id, \d+ hashes at a time: (?P<rate>[\d.]+) hashes/s = (?P<pct>\d+) % of the bound")
CLUSTER_OP = re.compile(r"^(?P<op>GET \S+) via HAProxy, (?P<n>\d+) instances?$")
HOP = re.compile(r"^\s+(?P<hop>.+?): (?P<p50>[+-][\d.]+) ms p50, (?P<p99>[+-][\d.]+) ms p99\s+\((?P<what>.+)\)$")

# The aims set for this report (keel ÷ ceiling, from one run), by the operation's name.
AIMS = {
    "GET /v1/products/{id}": ("bare axum handler", 0.50),
    "GET /v1/me (authenticated)": ("bare axum handler", 0.40),
}

NOTES = """\
## Why the figures are what they are

- **Reads against a bare handler.** The bare handler answers a fixed body with no routing, middleware, JSON encoding,
  cache lookup or database; Keel's reads go through request ids, tracing, security headers, CORS, rate limits (off
  here) and the cache. The cached product read and the list page never touch the database.
- **`GET /v1/me`.** The token's Ed25519 signature is checked once per token and remembered (bounded, for a minute).
  This benchmark runs one instance on SQLite, which remembers live sessions too: every committed change to accounts
  or sessions goes through that process and makes it forget them, so a logout is still refused on the next request.
  Instances sharing PostgreSQL look the session up on every request instead (see the cluster section).
- **Sign-in** is bound by Argon2id (19 MiB, t = 2): the bound is cores ÷ the time of one hash, measured in the same run.
  Hashes running on every core at once share the caches and memory bandwidth, so the machine gives less than that
  bound; the benchmark measures that too. Each permit's Argon2 memory is kept between hashes.
- **Jobs** are no-op handlers with 4 workers: a worker claims the due jobs of all its queues in one statement, up to
  twice its slots ahead, extends all its leases with one heartbeat statement, and completions without effects commit
  in shared batches. With one slot per worker each job still costs a claim of its own.
- **Wallet checkouts** are one write transaction of about twenty statements (order, line, stock, ledger transaction and
  entries, balances, cart, outbox events, receipt job, idempotency record) plus the cart write before it; the ceilings
  are a raw two-statement transaction loop (SQLite) and pgbench TPC-B (PostgreSQL).
- **PocketBase.** Both serve from SQLite. Keel's default is `synchronous=FULL` (a commit is on disk before the answer:
  money-grade durability), and a create also writes its outbox event in the same transaction; PocketBase opens
  SQLite with `synchronous=NORMAL` (its `core/db_connect.go`). Creates are where Keel is expected to trail;
  `sqlite_synchronous=normal` narrows that gap at the cost of the last commits on power loss. PocketBase signs in with
  bcrypt, Keel with Argon2id; the sign-in comparison measures those choices as much as the servers.
- **On 2 cores** the load generator, the server (and, for PocketBase, a second process) share the two cores, so
  absolute rates are low and noisy: read the ratios, which come from phases of the same run.
"""


def parse(text):
    """Rate lines paired with the indented line after them (the ceiling) and the ratio after that."""
    rows, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        m = LINE.match(line)
        if not m or m["indent"]:
            continue
        row = {"name": m["name"].strip(), "rate": int(m["rate"]), "p50": float(m["p50"]), "p99": float(m["p99"])}
        for following in lines[i + 1 : i + 4]:
            c = LINE.match(following)
            if c and c["indent"] and "against" not in row:
                row["against"] = {"name": c["name"].strip(), "rate": int(c["rate"]), "p50": float(c["p50"]), "p99": float(c["p99"])}
                continue
            r = RATIO.match(following)
            if r and "ratio" not in row:
                row["ratio"] = float(r["ratio"])
                break
            if LINE.match(following) and not LINE.match(following)["indent"]:
                break
        rows.append(row)
    return rows


def cluster_section(text, cores):
    """The "Cluster" section: each read through the balancer by instance count, and the hops."""
    rows = parse(text)
    by_op = {}
    for row in rows:
        m = CLUSTER_OP.match(row["name"])
        if m:
            by_op.setdefault(m["op"], {})[int(m["n"])] = row
    clients = re.search(r"(\d+) connections", text)
    build = re.search(r"(\w+) `keel serve`", text)
    md = ["## Cluster", ""]
    md.append(
        f"`cargo bench --bench cluster` starts `keel serve` ×1, ×2 and ×3 ({build[1] if build else ''}) with `deploy/local-cluster`, behind HAProxy "
        "(round robin), on a scratch PostgreSQL database and a Redis and NATS of the cluster's own, and drives the same "
        f"{clients[1] if clients else ''} clients through the balancer: a cached `GET /v1/products/{{id}}` and an authenticated "
        "`GET /v1/me`. With one instance it also sends the same requests straight to the instance."
    )
    md.append("")
    # Rows of 2 and 3 instances carry their ratio to one instance; the row of one, to the direct read.
    gains = [f"{ns[max(ns)]['ratio']:.2f}× ({op})" for op, ns in by_op.items() if len(ns) > 1 and "ratio" in ns[max(ns)]]
    md.append(
        f"**On {cores} cores more instances show overhead, not speed-up.** Every instance, HAProxy, PostgreSQL, Redis, NATS and "
        f"the load generator share the same {cores} cores, so a second and a third instance add processes, scheduling and "
        "connections, but no CPU. "
        + (f"Three instances served {' and '.join(gains)} the requests of one. " if gains else "")
        + "What scaling out buys here is that any instance can fail or restart while the others serve (see the cluster tests); "
        "throughput grows only when each instance has cores of its own."
    )
    md += ["", "| operation, through HAProxy | instances | req/s | p50 ms | p99 ms | ÷ 1 instance |", "|---|---:|---:|---:|---:|---:|"]
    for op, ns in by_op.items():
        for n, row in sorted(ns.items()):
            ratio = "1.00" if n == 1 else f"{row['ratio']:.2f}" if "ratio" in row else "–"
            md.append(f"| {op} | {n} | {row['rate']} | {row['p50']:.2f} | {row['p99']:.2f} | {ratio} |")
    hops = [m for m in map(HOP.match, text.splitlines()) if m]
    trips = [m for m in map(LINE.match, text.splitlines()) if m and "round trip" in m["name"]]
    if hops or trips:
        md += ["", "The cost of each hop, one instance:", ""]
        md += ["| hop | p50 ms | p99 ms | what the figure is |", "|---|---:|---:|---|"]
        for m in hops:
            md.append(f"| {m['hop']} | {m['p50']} | {m['p99']} | {m['what']}, the same clients, from the phases above |")
        for row in trips:
            md.append(
                f"| {row['name'].strip()} | {float(row['p50']):.2f} | {float(row['p99']):.2f} | one client on a connection of its own, from the load "
                "generator's process: the bare network and server cost of the hop, no queueing |"
            )
        md += [
            "",
            "Through the cluster the product read is answered from the instance's in-process copy after one Redis script call "
            "that checks the copy is still current (the cache's generation counters); `GET /v1/me` checks the token (its "
            "signature is remembered) and looks the session and its user up in PostgreSQL (one `SELECT` with a join) on "
            "every request. Their difference is therefore a PostgreSQL query in place of a Redis call plus the "
            "authentication around it, under load (waiting for a pooled connection included), not one round trip; the "
            "bare round trips in the table give the hop alone. The HAProxy rows compare the same request with and without the "
            "balancer: its own work plus one more loopback connection, and one more process on the same cores.",
        ]
    return md + [""]


def main():
    out, benches = Path(sys.argv[1]), sys.argv[2:]
    machine = dict(line.split("=", 1) for line in (out / "machine.txt").read_text().splitlines() if "=" in line)
    outputs = {b: (out / f"{b}.txt").read_text() for b in benches if (out / f"{b}.txt").exists()}
    docs = Path("docs")
    docs.mkdir(exist_ok=True)

    md = ["# Performance", ""]
    md.append(
        f"Written by `bench/report` on {machine.get('date')} at commit `{machine.get('commit')}`: {machine.get('cores')} cores "
        f"({machine.get('cpu')}), {machine.get('memory')}, {machine.get('rustc')}; load average before the run "
        f"{machine.get('load')}. Each figure stands next to its ceiling, measured in the same run on the same machine; "
        "the machine is shared and small, so compare the ratios, not absolute figures across runs. Run it again with "
        "`bench/report`."
    )
    md += ["", "![Latency percentiles](performance.png)", "", "## Summary", ""]
    md.append("| benchmark | operation | Keel req/s | p50 ms | p99 ms | against | its req/s | its p50 ms | ratio | aim |")
    md.append("|---|---|---:|---:|---:|---|---:|---:|---:|---:|")
    chart = []
    for bench, text in outputs.items():
        for row in parse(text):
            against = row.get("against")
            aim = AIMS.get(row["name"])
            md.append(
                f"| {bench} | {row['name']} | {row['rate']} | {row['p50']:.2f} | {row['p99']:.2f} | "
                + (f"{against['name']} | {against['rate']} | {against['p50']:.2f} | " if against else "– | – | – | ")
                + (f"{row['ratio']:.2f} | " if "ratio" in row else "– | ")
                + (f"≥ {aim[1]:.2f} {'✓' if row.get('ratio', 0) >= aim[1] else '✗'} |" if aim else "|")
            )
            chart.append((f"{bench}: {row['name']}", row, against))
    for bench, text in outputs.items():
        for m in ARGON.finditer(text):
            md.append("")
            md.append(f"Sign-in reached {m['pct']} % of the Argon2 bound (aim ≥ 90 %) {'✓' if int(m['pct']) >= 90 else '✗'}, "
                      f"and {m['parallel']} % of what {m['cores']} hashes at a time really give.")
        for m in PARALLEL.finditer(text):
            md.append(f"The bound is cores ÷ one hash's time; {m['rate']} hashes/s ran with every core hashing at once, "
                      f"{m['pct']} % of it: hashes running side by side share the caches and memory bandwidth.")
        jobs = list(JOBS.finditer(text))
        if jobs:
            md += ["", "| jobs | enqueue jobs/s | completed jobs/s | slots per worker | aim |", "|---|---:|---:|---:|---:|"]
            for m in jobs:
                aim = 5000 if m["backend"] == "PostgreSQL" else 2000
                md.append(
                    f"| {m['backend']} | {m['enqueue']} | {m['complete']} | {m['slots']} | ≥ {aim} {'✓' if int(m['complete']) >= aim else '✗'} |"
                )
    peer = [row for row in parse(outputs.get("peer", "")) if "ratio" in row]
    if peer:
        behind = [row["name"].removeprefix("keel: ") for row in peer if row["ratio"] < 1.0]
        md.append("")
        md.append(
            "Against PocketBase: Keel is ahead on every operation both have."
            if not behind
            else f"Against PocketBase: Keel is behind on {', '.join(behind)}; see below for why."
        )
    md.append("")
    if "cluster" in outputs:
        md += cluster_section(outputs["cluster"], machine.get("cores"))
    md += [NOTES]
    for bench, text in outputs.items():
        md += [f"## `cargo bench --bench {bench}`", "", "```text", text.rstrip(), "```", ""]
    (docs / "PERFORMANCE.md").write_text("\n".join(md) + "\n")

    if chart:
        fig, ax = plt.subplots(figsize=(11, 0.42 * len(chart) + 1.5))
        labels = [name for name, _, _ in chart]
        y = range(len(chart))
        ax.barh([i + 0.2 for i in y], [r["p99"] for _, r, _ in chart], height=0.4, label="Keel p99", color="#c0504d")
        ax.barh([i + 0.2 for i in y], [r["p50"] for _, r, _ in chart], height=0.4, label="Keel p50", color="#4f81bd")
        ax.barh([i - 0.2 for i in y], [a["p99"] if a else 0 for _, _, a in chart], height=0.4, label="ceiling or peer p99", color="#e6b8b7")
        ax.barh([i - 0.2 for i in y], [a["p50"] if a else 0 for _, _, a in chart], height=0.4, label="ceiling or peer p50", color="#b8cce4")
        ax.set_yticks(list(y))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log scale)")
        ax.set_title(f"Keel latency percentiles beside their ceilings and PocketBase, {machine.get('cores')} cores")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(docs / "performance.png", dpi=110)


if __name__ == "__main__":
    main()

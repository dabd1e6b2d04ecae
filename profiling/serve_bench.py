"""Throughput of ``shardpay serve`` against the batch CLI on the same rows.

Usage::

    python profiling/serve_bench.py --connections 1000 --rows-per-connection 1000 --repeat 3

Builds ``connections`` batches (each its own clients and tx ids, deterministic
by seed, so the final balances do not depend on how batches interleave) and
one batch file holding the same rows (``profiling/data/``). Then,
``--repeat`` times, alternating:

* ``shardpay FILE --quiet -o OUT`` (the batch CLI, wall time of the process);
* ``shardpay serve --token-file F`` (fsync on, and with ``--no-fsync``): the
  server is started and ready first; each connection sends ``auth NAME
  TOKEN`` and one batch with its own id and commit line, closes its writing
  side, and reads the whole answer (its reject lines too) until the server
  closes. The clock runs from the first connect
  until every connection has its answer (``load``), and until the server
  has written its final snapshot and exited after SIGTERM (``load+stop``).

All clients run in this process (asyncio, loopback), on the same machine as
the server: on 2 cores they take CPU from it. Every answer must be ``ok`` and
every run's snapshot equal the batch output. Prints a Markdown table (with
each run's wall over the batch CLI's of the same repeat, median: the paired
ratio) and writes it to ``profiling/results/serve-bench.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
HEADER = b"type,client,tx,amount\n"


def payload(i: int, rows: int, clients: int, seed: int) -> bytes:
    """Connection i's rows: clients i*clients.., tx ids i*rows..; deposits, withdrawals, disputes."""
    rng = random.Random(seed * 1_000_003 + i)
    deposits: list[tuple[int, int]] = []
    out = []
    for j in range(rows):
        c = i * clients + rng.randrange(clients)
        tx = i * rows + j
        r = rng.random()
        if r < 0.5 or not deposits:
            out.append(f"deposit,{c},{tx},{rng.randrange(1, 10**6) / 100}")
            deposits.append((c, tx))
        elif r < 0.85:
            out.append(f"withdrawal,{c},{tx},{rng.randrange(1, 10**5) / 100}")
        else:
            dc, dtx = rng.choice(deposits)
            out.append(f"{rng.choice(('dispute', 'resolve', 'chargeback'))},{dc},{dtx},")
    return ("\n".join(out) + "\n").encode()


def shardpay() -> str:
    return shutil.which("shardpay", path=str(Path(sys.executable).parent)) or "shardpay"


TOKEN = ("bench", secrets.token_hex(32))


def request(batch_id: str, body: bytes) -> bytes:
    """``auth``, then one batch (shardpay.serve.protocol, as a client in any language writes it)."""
    from shardpay.serve.protocol import auth_line, batch_request

    return auth_line(*TOKEN) + batch_request(batch_id, body)


async def _one(port: int, data: bytes) -> bytes:
    """One connection: its request, its writing side closed, then the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    writer.write_eof()
    answer = await reader.read()
    writer.close()
    return answer


def run_batch(path: Path, out: Path, workers: int) -> float:
    t0 = time.perf_counter()
    subprocess.run([shardpay(), str(path), "--quiet", "--workers", str(workers), "-o", str(out)], check=True)
    return time.perf_counter() - t0


def run_serve(payloads: list[bytes], tmp: Path, workers: int, fsync: bool) -> tuple[float, float, bytes]:
    journal, snap, log, tokens = tmp / "journal", tmp / "snap.csv", tmp / "serve.log", tmp / "tokens"
    journal.unlink(missing_ok=True)
    tokens.write_text(f"{TOKEN[0]} {TOKEN[1]}\n")
    tokens.chmod(0o600)
    args = [shardpay(), "serve", "--listen", "127.0.0.1:0", "--journal", str(journal), "--snapshot", str(snap),
            "--snapshot-every", "3600", "--workers", str(workers), "--token-file", str(tokens),
            "--max-connections", str(max(1024, len(payloads)))] + ([] if fsync else ["--no-fsync"])
    with open(log, "w+b") as err:
        proc = subprocess.Popen(args, stderr=err)
        while not (m := re.search(rb"listening on [\d.]+:(\d+)", log.read_bytes())):
            if proc.poll() is not None:
                sys.exit(f"server did not start: {log.read_text()}")
            time.sleep(0.02)
        port = int(m.group(1))

        async def load() -> list[bytes]:
            return await asyncio.gather(*(_one(port, p) for p in payloads))

        t0 = time.perf_counter()
        answers = asyncio.run(load())
        t1 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        if proc.wait(300) != 0:
            sys.exit(f"server failed: {log.read_text()}")
        t2 = time.perf_counter()
    bad = [a for a in answers if not a.startswith(b"ok ")]
    if bad:
        sys.exit(f"{len(bad)} connections not ok, e.g. {bad[0]!r}")
    return t1 - t0, t2 - t0, snap.read_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--rows-per-connection", type=int, default=1000)
    ap.add_argument("--clients-per-connection", type=int, default=60)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    payloads = [payload(i, a.rows_per_connection, a.clients_per_connection, a.seed) for i in range(a.connections)]
    rows = a.connections * a.rows_per_connection
    DATA.mkdir(exist_ok=True)
    path = DATA / f"serve-{a.connections}x{a.rows_per_connection}-s{a.seed}.csv"
    path.write_bytes(HEADER + b"".join(payloads))
    times: dict[str, list[float]] = {"batch": [], "serve load": [], "serve load+stop": [],
                                     "serve --no-fsync load": [], "serve --no-fsync load+stop": []}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp_name:
        tmp = Path(tmp_name)
        out = tmp / "batch.csv"
        for rep in range(a.repeat):
            times["batch"].append(run_batch(path, out, a.workers))
            expected = out.read_bytes()
            for fsync, name in ((True, "serve"), (False, "serve --no-fsync")):
                batches = [request(f"b{i}-{rep}", HEADER + p) for i, p in enumerate(payloads)]
                load_s, total_s, snap = run_serve(batches, tmp, a.workers, fsync)
                if snap != expected:
                    sys.exit(f"{name}: the snapshot differs from the batch output")
                times[f"{name} load"].append(load_s)
                times[f"{name} load+stop"].append(total_s)
            print(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), file=sys.stderr)
    batch = statistics.median(times["batch"])
    lines = [
        f"# shardpay serve vs batch CLI: {a.connections:,} connections x {a.rows_per_connection:,} rows "
        f"= {rows:,} rows, --workers {a.workers}",
        "",
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"median of {a.repeat}; clients in the same machine (loopback), each with a token and one batch "
        f"(its id, commit line and per-row answer). Command: "
        f"`python profiling/serve_bench.py --connections {a.connections} "
        f"--rows-per-connection {a.rows_per_connection} --workers {a.workers} --repeat {a.repeat}`",
        "",
        "*x batch, paired*: the median over repeats of each run's wall over the batch CLI's wall of the",
        "same repeat (run right before it): steadier than the ratio of medians on a machine whose other",
        "load comes and goes.",
        "",
        "| run | median wall s | rows/s | x batch | x batch, paired |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, values in times.items():
        m = statistics.median(values)
        paired = statistics.median(v / b for v, b in zip(values, times["batch"]))
        lines.append(f"| {name} | {m:.2f} | {rows / m:,.0f} | {m / batch:.2f} | {paired:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "serve-bench.md").write_text(text)


if __name__ == "__main__":
    main()

"""Host memory per entry of `safe_extract` (the number behind `agent.max_entries`). Prints a Markdown table.

    python benchmarks/bench_entries.py [--entries 200000]

A tar of N empty members is written by a thread into a pipe (the writer forgets each member) and
extracted with no entry limit, once as N empty files in 200 directories (each written, so remembered for
hardlinks) and once as N `..` names (each refused: only counted past the listed 1,000). Each case runs
in a fresh process; the growth of its peak RSS over the extraction, divided by N, is the cost of an entry.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile

_CASE = """
import io, os, resource, sys, tarfile, threading, time
from pathlib import Path
from sandboxctl.safe_extract import extract

count, kind, dest = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
read_fd, write_fd = os.pipe()

def write():
    with os.fdopen(write_fd, "wb") as pipe, tarfile.open(fileobj=pipe, mode="w|") as tar:
        for i in range(count):
            name = f"ws/src/module_{i % 200:03d}/file_{i:07d}.py" if kind == "written" else f"ws/../up_{i:07d}"
            tar.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
            tar.members.clear()

threading.Thread(target=write, daemon=True).start()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
with os.fdopen(read_fd, "rb") as stream:
    report = extract(stream, dest, strip_components=1)
seconds = time.monotonic() - started
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(report.entries, len(report.skipped), grown, seconds)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    count = parser.parse_args().entries
    print("| case | entries | skips listed | RSS growth | per entry | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in ("written", "refused"):
        with tempfile.TemporaryDirectory(prefix="bench-entries-") as dest:
            out = subprocess.run(
                [sys.executable, "-c", _CASE, str(count), kind, dest], check=True, capture_output=True, text=True
            ).stdout.split()
        entries, listed, grown, seconds = int(out[0]), int(out[1]), int(out[2]), float(out[3])
        print(f"| {kind} | {entries} | {listed} | {grown / 2**20:.1f} MiB | {grown / count:.0f} B | {seconds:.1f} |")


if __name__ == "__main__":
    main()

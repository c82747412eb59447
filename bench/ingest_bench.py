"""Benchmark of `ingest jobs` on the whole bundled job dictionary, through the real CLI in a subprocess.

    python -m bench.ingest_bench                      # fresh temp data dir (SQLite), removed afterwards
    python -m bench.ingest_bench --keep --workdir /tmp/jinro-bench

Three runs against one fresh data dir:
  1. `ingest jobs <dictionary>` into an empty DB: wall time, CPU time, peak RSS, chunks/s, DB and index sizes;
  2. the same command again: it must embed nothing; the ratio of the two wall times is reported (goal >= 20x);
  3. `ingest verify`: must exit 0.
Writes the figures to bench/out/ingest.json and prints a markdown table. Exits 1 when a run fails, the second
run embeds anything, or verify fails (the speed goal alone does not fail it: it is reported as goal_met).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from tests.support.processes import ingest_executable

ROOT = Path(__file__).resolve().parent.parent
DICTIONARY = ROOT / "data" / "job_dictionary" / "job_dictionary_work24.jsonl"
OUT = ROOT / "bench" / "out" / "ingest.json"
RATIO_GOAL = 20.0


def timed(args: list[str], env: dict[str, str], log: Path) -> dict:
    """Run one command; wall time, CPU time and peak RSS of that process (from wait4), exit code, output."""
    with log.open("wb") as fh:
        start = time.perf_counter()
        proc = subprocess.Popen([*ingest_executable(), *args], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "command": "ingest " + " ".join(args),
        "exit_code": proc.returncode,
        "wall_s": round(wall, 2),
        "cpu_user_s": round(usage.ru_utime, 2),
        "cpu_sys_s": round(usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "output_tail": log.read_text(encoding="utf-8", errors="replace")[-2000:],
    }


def status(env: dict[str, str]) -> dict:
    out = subprocess.run([*ingest_executable(), "status", "--json"], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def size_mb(paths: list[Path]) -> float:
    total = 0
    for p in paths:
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        elif p.exists():
            total += p.stat().st_size
    return round(total / 2**20, 2)


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gb = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "db", "ingest"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = "", False
    return {
        "cpus": os.cpu_count(), "cpu_model": model, "memory_gb": mem_gb, "python": platform.python_version(),
        "platform": platform.platform(), "git_commit": commit, "db_or_ingest_modified": dirty,
    }


def markdown(result: dict) -> str:
    first, second, verify = result["runs"]["first"], result["runs"]["second"], result["runs"]["verify"]
    d = result["data"]
    rows = [
        ("records / documents / chunks", f"{d['records']} / {d['documents']} / {d['chunks']}"),
        ("1st run (empty DB): wall", f"{first['wall_s']} s"),
        ("1st run: CPU user + sys", f"{first['cpu_user_s']} + {first['cpu_sys_s']} s"),
        ("1st run: chunks embedded/s", f"{result['chunks_per_s']}"),
        ("1st run: documents/s", f"{result['documents_per_s']}"),
        ("1st run: peak RSS", f"{first['peak_rss_mb']} MB"),
        ("2nd run (same input): wall", f"{second['wall_s']} s (embedded {result['second_run_chunks_embedded']})"),
        ("2nd run: peak RSS", f"{second['peak_rss_mb']} MB"),
        ("1st / 2nd wall time", f"{result['ratio']}x (goal >= {RATIO_GOAL:g}x: {'met' if result['goal_met'] else 'NOT met'})"),
        ("`ingest verify`", f"exit {verify['exit_code']}, {verify['wall_s']} s"),
        ("SQLite DB (+WAL)", f"{result['db_mb']} MB"),
        ("FAISS index (+meta)", f"{result['index_mb']} MB"),
        ("load average before / after", f"{result['loadavg_before']} / {result['loadavg_after']}"),
    ]
    m = result["machine"]
    lines = [f"ingest benchmark — {m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, {result['started_at']}", "",
             "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DICTIONARY, help="job dictionary JSONL (default: the bundled one)")
    ap.add_argument("--out", type=Path, default=OUT, help="JSON result file")
    ap.add_argument("--workdir", type=Path, help="data dir to use (must not exist or be empty); default: a temp dir")
    ap.add_argument("--keep", action="store_true", help="keep the data dir (DB, index, logs) afterwards")
    args = ap.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="jinro-bench-"))
    if workdir.exists() and any(workdir.iterdir()):
        ap.error(f"{workdir} is not empty: the benchmark needs a fresh data dir")
    data_dir = workdir / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINRO_")}
    env["JINRO_DATA_DIR"] = str(data_dir)  # SQLite under it, default embedder
    records = sum(1 for line in args.data.open(encoding="utf-8") if line.strip())
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_before = [round(x, 2) for x in os.getloadavg()]

    try:
        first = timed(["jobs", str(args.data)], env, workdir / "first.log")
        stats1 = status(env) if first["exit_code"] == 0 else {}
        db_mb = size_mb([data_dir / "jinro.db", data_dir / "jinro.db-wal", data_dir / "jinro.db-shm"])
        index_mb = size_mb([data_dir / "index"])
        second = timed(["jobs", str(args.data)], env, workdir / "second.log")
        stats2 = status(env) if second["exit_code"] == 0 else {}
        verify = timed(["verify"], env, workdir / "verify.log")
    finally:
        load_after = [round(x, 2) for x in os.getloadavg()]

    run1 = (stats1.get("last_runs") or [{}])[0]
    run2 = (stats2.get("last_runs") or [{}])[0]
    embedded1 = run1.get("chunks_embedded", 0)
    ratio = round(first["wall_s"] / second["wall_s"], 1) if second["wall_s"] else None
    result = {
        "started_at": started,
        "machine": machine(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "data": {"path": str(args.data), "records": records, "documents": stats1.get("documents"),
                 "chunks": stats1.get("chunks"), "occupations": stats1.get("occupations")},
        "runs": {"first": first, "second": second, "verify": verify},
        "first_run_chunks_embedded": embedded1,
        "second_run_chunks_embedded": run2.get("chunks_embedded"),
        "second_run_unchanged": run2.get("unchanged"),
        "chunks_per_s": round(embedded1 / first["wall_s"], 1) if first["wall_s"] else None,
        "documents_per_s": round((stats1.get("documents") or 0) / first["wall_s"], 1) if first["wall_s"] else None,
        "ratio": ratio,
        "ratio_goal": RATIO_GOAL,
        "goal_met": bool(ratio and ratio >= RATIO_GOAL),
        "db_mb": db_mb,
        "index_mb": index_mb,
        "index_in_sync": (stats2.get("index") or {}).get("in_sync"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(markdown(result))
    print(f"\nwritten: {args.out}")

    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"data dir kept: {data_dir}")
    failures = []
    if first["exit_code"] or second["exit_code"]:
        failures.append(f"ingest exit codes {first['exit_code']}, {second['exit_code']}")
    if result["second_run_chunks_embedded"] != 0:
        failures.append(f"second run embedded {result['second_run_chunks_embedded']} chunks (expected 0)")
    if verify["exit_code"]:
        failures.append(f"ingest verify exited {verify['exit_code']}")
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

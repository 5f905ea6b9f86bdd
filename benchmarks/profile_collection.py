#!/usr/bin/env python
"""Where does onboard_users.yml spend its time? Profile every module process of one run.

Runs the collection's playbook (through run.py's adapter) on fresh sandbox clusters, first and again
(nothing to do), keeping the AnsiballZ payloads. Then, with the sandbox still up, every module payload of
the chosen run is exploded and executed again under cProfile with the same arguments, and a summary is
printed: seconds in imports, seconds in main(), and the heaviest functions. Full cProfile listings go to
benchmarks/results/profile/.

    .venv/bin/python benchmarks/profile_collection.py --users 100 --clusters 2 [--run rerun|first]

Executing a payload of the first run a second time profiles the module with the work already done
(its own re-run), so `--run first` mostly shows import and start-up cost; `rerun` (default) is exact.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (benchmarks/run.py: adapter, sandbox and measurement helpers)

MODULE_DIR = os.path.join("debug_dir", "ansible_collections", "kubepki", "certs", "plugins", "modules")


def summarize(listing, name, top=8):
    """Import seconds, main() seconds and the heaviest functions of the collection's own code."""
    rows = []
    for line in listing.splitlines():
        match = re.match(r"\s*([\d/]+)\s+([\d.]+)\s+[\d.]+\s+([\d.]+)\s+[\d.]+\s+(.*)$", line)
        if match:
            rows.append((float(match.group(3)), match.group(1), match.group(4)))
    imports = max((r[0] for r in rows if "_find_and_load)" in r[2]), default=0.0)
    main = max((r[0] for r in rows if r[2].endswith("(main)")), default=0.0)
    ours = re.compile(r"^(_[a-z][a-z_]*|%s)\.py:\d+\((?!<module>|main\))" % re.escape(name))
    stdlib = ("_compiler.py", "_parser.py", "_bootstrap", "_collections_abc.py", "_weakrefset.py")
    heavy = [r for r in rows if ours.match(r[2]) and not r[2].startswith(stdlib)][:top]
    return imports, main, heavy


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--clusters", type=int, default=2)
    parser.add_argument("--run", choices=("first", "rerun"), default="rerun")
    args = parser.parse_args()
    reason = run.CollectionVariant.unavailable() or run.sandbox_missing_reason()
    if reason:
        sys.exit(reason)
    out_dir = os.path.join(run.RESULTS, "profile")
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="kubepki-profile-")
    env = run.base_env()
    sandbox, clusters = run.start_sandbox(os.path.join(work, "sandbox"), args.clusters)
    try:
        options = argparse.Namespace(poll_interval=1.0, timeout=1800)
        variant = run.CollectionVariant(work, run.make_users(args.users), clusters, sandbox, env, options)
        kept = os.path.join(work, "kept")
        for attempt in ("first", "rerun"):
            cmd = variant.command(attempt)
            variant.env.update(ANSIBLE_KEEP_REMOTE_FILES="1", ANSIBLE_REMOTE_TMP=os.path.join(kept, attempt))
            result = run.measure(cmd, variant.env, os.path.join(work, "output.log"), 1800)
            print("%s run: wall %.1fs, CPU %.1fs, rc %d" % (attempt, result["wall"], result["cpu"], result["rc"]))
            for task, item in variant.task_profile(attempt).items():
                if item["seconds"] >= 0.5:
                    print("  %6.1fs %3d x  %s" % (item["seconds"], item["calls"], task))
        print("\nmodule processes of the %s run, executed again under cProfile (sandbox still up):" % args.run)
        for payload in sorted(glob.glob(os.path.join(kept, args.run, "ansible-tmp-*", "AnsiballZ_*.py"))):
            name = os.path.basename(payload)[len("AnsiballZ_"):-3]
            where = os.path.dirname(payload)
            subprocess.run([sys.executable, payload, "explode"], cwd=where, capture_output=True, env=env, check=True)
            module = os.path.join(where, MODULE_DIR, name + ".py")
            if not os.path.exists(module):      # a builtin module (file, stat): not ours
                continue
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "cProfile", "-s", "cumtime", module,
                                   os.path.join(where, "debug_dir", "args")],
                                  cwd=where, capture_output=True, text=True, check=False,
                                  env=dict(env, PYTHONPATH=os.path.join(where, "debug_dir")))
            wall = time.perf_counter() - started
            listing = os.path.join(out_dir, "%s-%s.txt" % (name, os.path.basename(where)[-6:]))
            with open(listing, "w") as handle:
                handle.write(proc.stdout + proc.stderr)
            imports, in_main, heavy = summarize(proc.stdout, name)
            found = re.search(r'"changed": (true|false)', proc.stdout)
            changed = found.group(1) if found else "?"
            print("\n%s: %.2fs wall, imports %.2fs, main() %.2fs, changed=%s (%s)" % (
                name, wall, imports, in_main, changed, os.path.relpath(listing, run.REPO)))
            for cumtime, calls, where_fn in heavy:
                print("  %6.2fs %8s  %s" % (cumtime, calls, where_fn[-110:]))
    finally:
        sandbox.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

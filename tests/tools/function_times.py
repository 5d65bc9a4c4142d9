#!/usr/bin/env python3
"""Per-function times of the Qt Test executables, from their JUnit XML reports.

  tests/tools/function_times.py BUILD_DIR [--label L] [--jobs N] [--top K]

Runs every CTest test of BUILD_DIR (or those with label L) with the environment CTest gives it,
N at a time, asking each Qt Test executable for a JUnit report, then prints each test's wall time
and its slowest functions. No test function may take more than 60 s on a 2-core machine; the
table says which come closest.
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET


def ctest_tests(build, label):
    cmd = ["ctest", "--test-dir", build, "--show-only=json-v1"]
    if label:
        cmd += ["-L", label]
    info = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    tests = []
    for t in info["tests"]:
        env = dict(os.environ)
        for p in t.get("properties", []):
            if p["name"] == "ENVIRONMENT":
                for kv in p["value"]:
                    k, _, v = kv.partition("=")
                    env[k] = v
        tests.append((t["name"], t["command"], env))
    return tests


def run_one(test, outdir):
    name, command, env = test
    xml = os.path.join(outdir, name + ".xml")
    t0 = time.monotonic()
    proc = subprocess.run(command + ["-o", xml + ",junitxml", "-o", "-,txt"], env=env,
                          capture_output=True, text=True)
    wall = time.monotonic() - t0
    functions = []
    try:
        for case in ET.parse(xml).getroot().iter("testcase"):
            functions.append((float(case.get("time", 0)), case.get("name")))
    except (OSError, ET.ParseError):
        pass
    return name, proc.returncode, wall, sorted(functions, reverse=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--label")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--top", type=int, default=3)
    a = ap.parse_args()
    tests = ctest_tests(a.build, a.label)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as outdir, concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
        results = list(pool.map(lambda t: run_one(t, outdir), tests))
    total = time.monotonic() - t0
    worst = 0.0
    for name, rc, wall, functions in sorted(results, key=lambda r: -r[2]):
        slow = ", ".join(f"{f} {s:.1f}s" for s, f in functions[: a.top])
        print(f"{name:28s} {'ok ' if rc == 0 else 'FAIL'} {wall:7.1f} s   {slow}")
        if functions:
            worst = max(worst, functions[0][0])
    print(f"{'total (wall, ' + str(a.jobs) + ' at a time)':28s}     {total:7.1f} s   slowest function {worst:.1f} s")
    return 0 if all(r[1] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

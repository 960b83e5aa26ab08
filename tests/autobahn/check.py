#!/usr/bin/env python3
"""Judges an Autobahn run (kosoku's index.json files) against expected.txt.

Fails when: a report is missing or holds fewer cases than expected.txt's `cases`
line; any case is FAILED, ERROR, WRONG CODE, UNCLEAN or FAILED BY CLIENT without an
entry; any case is not plainly OK/OK without an entry (NON-STRICT, INFORMATIONAL,
UNIMPLEMENTED must be explained in README.md, so they are listed); or an entry no
longer matches (so the README never describes a run that no longer happens).

expected.txt: `cases N` (the least number of cases over all reports), then lines
`PATTERN BEHAVIOR BEHAVIOR_CLOSE` (fnmatch patterns such as `12.*`); `#` comments.
"""
import fnmatch
import json
import sys


def main() -> int:
    expected_path, *reports = sys.argv[1:]
    least = 0
    rules = []
    for line in open(expected_path, encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("cases "):
            least = int(line.split()[1])
            continue
        pattern, behavior, close = line.split(None, 2)
        rules.append((pattern, behavior, close, [0]))
    results = {}
    for path in reports:
        try:
            index = json.load(open(path, encoding="utf-8"))
        except (OSError, ValueError) as e:
            print(f"autobahn: no report {path}: {e}")
            return 1
        for cases in index.values():
            for case, r in cases.items():
                results[case] = (r["behavior"], r["behaviorClose"])
    problems = []
    if len(results) < least:
        problems.append(f"only {len(results)} cases ran, expected at least {least}")
    counts = {}
    for case in sorted(results, key=lambda c: [int(x) for x in c.split(".")]):
        got = results[case]
        counts[got] = counts.get(got, 0) + 1
        rule = next((r for r in rules if fnmatch.fnmatchcase(case, r[0])), None)
        if rule is None:
            if got != ("OK", "OK"):
                problems.append(f"{case}: {got[0]} / {got[1]} is not in expected.txt (explain it in README.md)")
            continue
        rule[3][0] += 1
        if got != (rule[1], rule[2]):
            problems.append(f"{case}: {got[0]} / {got[1]}, expected.txt says {rule[1]} / {rule[2]}")
    for pattern, behavior, close, used in rules:
        if used[0] == 0:
            problems.append(f"expected.txt: {pattern} ({behavior} / {close}) matched no case")
    summary = ", ".join(f"{n} {b}/{c}" for (b, c), n in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(f"autobahn: {len(results)} cases: {summary}")
    failed = sum(n for (b, c), n in counts.items() if "FAILED" in (b, c) or b == "ERROR")
    print(f"autobahn: {failed} FAILED")
    for p in problems:
        print(f"autobahn: {p}")
    return 1 if problems or failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Reads the step timeline's dump (the LT_STEP_TIMELINE build, native/cuda/step_timeline.cuh) of
decode steps replayed from a CUDA graph and prints where a step's time goes: for each kernel of a
layer, the time from the kernel ahead's last block leaving to its own last block leaving (its share
of the step's critical path), how long after the kernel ahead left its blocks' waits returned, how
early they had entered, and the spread of their exits; then the phases of decode attention.

  LIGHTTRANSFER_STEP_TIMELINE=on npm run build:native      # here: build-timeline/Release/...
  LT_TIMELINE_FILE=steps.txt LT_TIMELINE_FIRST=8 LT_TIMELINE_LAST=9 \\
    LIGHTTRANSFER_ADDON=build-timeline/Release/lighttransfer.node node tools/gpu/decode_steps.js MODEL 4096 10
  python3 tools/gpu/step_timeline.py steps.txt

A step is the layers' launches in order (q|k|v, attention, o, gate|up, down), then the head; the
embedding and argmax kernels are not recorded and fall in the gap between steps.
"""
import argparse
import collections
import dataclasses
import statistics
import sys

KERNELS = ["q|k|v", "attention", "o", "gate|up", "down"]
# Record kinds, as native/cuda/step_timeline.cuh's TimelineKind numbers them (3, a split with no
# tiles, is not read here).
GEMV, SPLIT, MERGE = 0, 1, 2


def read(path):
    """Records as (kind, key, enter, waited, exit), times in µs from the first entry."""
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                kind, key, _block, enter, waited, leave = line.split()
                rows.append((int(kind), key, int(enter), int(waited), int(leave)))
            except ValueError:
                print(f"{path}:{number}: not a record, skipped: {line.strip()!r}", file=sys.stderr)
    if not rows:
        sys.exit(f"{path}: no records (was the addon built with LT_STEP_TIMELINE=ON?)")
    t0 = min(r[2] for r in rows)
    return [(k, key, (e - t0) / 1e3, (w - t0) / 1e3, (x - t0) / 1e3) for k, key, e, w, x in rows]


@dataclasses.dataclass
class Launch:
    """One kernel launch's blocks (records) and its edges, µs: first entry, first wait returned,
    last exit."""

    blocks: list
    gemv: bool = dataclasses.field(init=False)
    entered: float = dataclasses.field(init=False)
    waited: float = dataclasses.field(init=False)
    left: float = dataclasses.field(init=False)

    def __post_init__(self):
        self.gemv = self.blocks[0][0] == GEMV
        self.entered = min(b[2] for b in self.blocks)
        self.waited = min(b[3] for b in self.blocks)
        self.left = max(b[4] for b in self.blocks)


def launches(records):
    """Groups the records into launches: one kernel family and key, no gap of more than 1 ms between
    one block's entry and the next (a step's launches of one key are ~4 ms apart)."""
    by_key = collections.defaultdict(list)
    for r in records:
        by_key[(r[0] == GEMV, r[1])].append(r)
    out = []
    for rs in by_key.values():
        rs.sort(key=lambda r: r[2])
        current = [rs[0]]
        for r in rs[1:]:
            if r[2] - current[-1][2] > 1000:
                out.append(Launch(current))
                current = []
            current.append(r)
        out.append(Launch(current))
    return sorted(out, key=lambda launch: launch.entered)


def steps_of(all_launches):
    """Splits launches into steps at a gap of more than 20 µs between one's end and the next's start."""
    steps = [[all_launches[0]]]
    for launch in all_launches[1:]:
        if launch.entered - steps[-1][-1].left > 20:
            steps.append([])
        steps[-1].append(launch)
    return steps


def check_layout(step, number):
    """A step is layers of five launches, attention second, then the head; anything else (a buffer
    that filled up, another model's step) would be misnamed, so it stops here."""
    attention_at = [i for i, launch in enumerate(step) if not launch.gemv]
    if (len(step) - 1) % len(KERNELS) != 0 or attention_at != list(range(1, len(step) - 1, len(KERNELS))):
        sys.exit(
            f"step {number}: {len(step)} launches, attention at {attention_at[:6]}...: not the layers of a decode "
            "step (q|k|v, attention, o, gate|up, down) and a head; was the dump cut short?"
        )


def kernel_table(step):
    per = collections.defaultdict(lambda: collections.defaultdict(list))
    for i in range(1, len(step)):
        ahead, launch = step[i - 1], step[i]
        d = per["head" if i == len(step) - 1 else KERNELS[i % len(KERNELS)]]
        d["critical"].append(launch.left - ahead.left)
        d["run"].append(launch.left - launch.waited)
        d["wait after"].append(launch.waited - ahead.left)
        d["entered before"].append(ahead.left - launch.entered)
        d["exit spread"].append(launch.left - statistics.median(b[4] for b in launch.blocks))
        d["blocks"].append(len(launch.blocks))
    print(
        f"  {'kernel':10} {'launches':>8} {'blocks':>6} {'critical µs':>11} {'sum µs':>8} {'wait..exit':>10}"
        f" {'wait after ahead left':>21} {'first entered before':>20} {'exit median..last':>17}"
    )
    for name in KERNELS + ["head"]:
        d = per.get(name)
        if not d:
            continue
        med = {k: statistics.median(v) for k, v in d.items()}
        print(
            f"  {name:10} {len(d['critical']):8} {med['blocks']:6.0f} {med['critical']:11.2f} {sum(d['critical']):8.1f}"
            f" {med['run']:10.2f} {med['wait after']:21.2f} {med['entered before']:20.2f} {med['exit spread']:17.2f}"
        )


def attention_phases(all_launches):
    phases = collections.defaultdict(list)
    for launch in all_launches:
        if launch.gemv:
            continue
        splits = sorted(b[4] - launch.entered for b in launch.blocks if b[0] == SPLIT)
        merges = sorted(b[4] - launch.entered for b in launch.blocks if b[0] == MERGE)
        phases["waits returned (first, µs after the first block entered)"].append(launch.waited - launch.entered)
        if splits:
            phases["plain splits left: first"].append(splits[0])
            phases["plain splits left: median"].append(statistics.median(splits))
            phases["plain splits left: last"].append(splits[-1])
        if merges:
            phases["merging splits left: last"].append(merges[-1])
        if splits and merges:
            phases["merge after the last plain split"].append(merges[-1] - splits[-1])
    if not phases:
        return
    print("decode attention, µs from its first block entering (median over launches, min-max):")
    for name, values in phases.items():
        print(f"  {name:58} {statistics.median(values):6.2f}  ({min(values):.2f}-{max(values):.2f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump", help="the file LT_TIMELINE_FILE named")
    args = ap.parse_args()
    all_launches = launches(read(args.dump))
    steps = steps_of(all_launches)
    print(f"{len(all_launches)} launches in {len(steps)} steps ({', '.join(str(len(s)) for s in steps)} launches)")
    for i, step in enumerate(steps):
        check_layout(step, i + 1)
        span = step[-1].left - step[0].entered
        print(f"step {i + 1}: span {span:.1f} µs (first block in to the head's last block out)", end="")
        if i > 0:
            print(f", {step[0].entered - steps[i - 1][-1].left:.1f} µs after the step before", end="")
        print()
        kernel_table(step)
    attention_phases(all_launches)
    return 0


if __name__ == "__main__":
    sys.exit(main())

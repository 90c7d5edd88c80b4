"""The runs of tools/gpu/ab_model_decode.sh side by side: for each build and (batch, context), the
graph step's ms in every run, their median, and the median's ratio to the first build's; a run
whose logits failed the model check against transformers is named and fails the summary.

    python3 tools/gpu/summarize_ab_decode.py OUT_DIR NAME [NAME ...]
"""
import glob
import json
import os
import statistics
import sys


def main(out, names):
    steps = {}  # (name, batch, context) -> [ms in run order]
    failed = []
    for path in sorted(glob.glob(os.path.join(out, "ab-*.json")), key=lambda p: [int(x) for x in os.path.basename(p).split("-")[1:3]]):
        name = os.path.basename(path)[: -len(".json")].split("-", 3)[3]
        with open(path) as f:
            result = json.load(f)
        checks = [v for k, v in result["correctness"].items() if k.endswith("pass")]
        if not checks or not all(checks):
            failed.append(os.path.basename(path))
        for point in result["grid"]:
            steps.setdefault((name, point["batch"], point["context"]), []).append(point["graphStepMs"])
    points = sorted({(b, c) for (_, b, c) in steps})
    print(f"{'build':16} {'batch':>5} {'context':>7} {'median ms':>9} {'speed vs ' + names[0]:>16}  runs (ms, in order)")
    for batch, context in points:
        base = statistics.median(steps.get((names[0], batch, context), [float("nan")]))
        for name in names:
            runs = steps.get((name, batch, context), [])
            if not runs:
                print(f"{name:16} {batch:5d} {context:7d} {'no run':>9}")
                continue
            median = statistics.median(runs)
            print(f"{name:16} {batch:5d} {context:7d} {median:9.3f} {base / median:15.3f}x  {' '.join(f'{ms:.2f}' for ms in runs)}")
    if failed:
        raise SystemExit(f"model check failed in: {', '.join(failed)}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2:])

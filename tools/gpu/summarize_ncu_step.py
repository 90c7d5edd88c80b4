"""The last decode step (or prefill) of an Nsight Compute CSV (ncu --csv --page raw, with the
metrics gpu__time_duration.sum and dram__bytes_read.sum): the kernels from the last embedding launch
on, grouped by kernel name, with their summed time, DRAM bytes read and bandwidth, largest first.

    python3 tools/gpu/summarize_ncu_step.py ncu.csv
"""
import csv
import re
import sys


def number(text):
    return float(text.replace(",", "")) if text not in ("", "n/a") else 0.0


def short_name(full):
    """A kernel's name with its template arguments (they tell the GEMV's forms apart), without its
    namespaces, return type and parameter list."""
    name = re.sub(r"^void ", "", full.replace("(anonymous namespace)::", "").replace("<unnamed>::", ""))
    depth = 0
    for i, ch in enumerate(name):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
            if depth == 0:
                name = name[: i + 1]
                break
        elif ch == "(" and depth == 0:
            name = name[:i]
            break
    head, angle, rest = name.partition("<")
    return head.split("::")[-1] + angle + rest.replace("__nv_bfloat16", "bf16").replace("lt::LinearInput", "input")


def scale(units, metric, known):
    unit = units.get(metric, "")
    if unit not in known:
        raise SystemExit(f"{metric} is in {unit!r}, not one of {sorted(known)}: run ncu with --metrics {metric}")
    return known[unit]


def main(path):
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own log lines are not CSV
    rows = list(csv.DictReader(lines))
    if len(rows) < 2:
        raise SystemExit(f"{path}: no kernel rows")
    units = rows[0]  # the row after the header holds the units
    kernels = rows[1:]
    starts = [i for i, r in enumerate(kernels) if "embedding" in r["Kernel Name"]]
    if not starts:
        raise SystemExit(f"{path}: no embedding kernel, so no decode step or prefill to cut out")
    step = kernels[starts[-1]:]
    time_scale = scale(units, "gpu__time_duration.sum", {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3})
    byte_scale = scale(units, "dram__bytes_read.sum", {"byte": 1e-9, "B": 1e-9, "Kbyte": 1e-6, "KB": 1e-6, "Mbyte": 1e-3, "MB": 1e-3, "Gbyte": 1.0, "GB": 1.0})
    groups = {}
    for r in step:
        name = short_name(r["Kernel Name"])
        g = groups.setdefault(name, [0, 0.0, 0.0])
        g[0] += 1
        g[1] += number(r["gpu__time_duration.sum"]) * time_scale
        g[2] += number(r["dram__bytes_read.sum"]) * byte_scale
    total_us = sum(g[1] for g in groups.values())
    total_gb = sum(g[2] for g in groups.values())
    print(f"{len(step)} kernels, {total_us:.0f} us in sum (each timed alone), {total_gb:.2f} GB read")
    print(f"{'kernel':60} {'count':>5} {'us':>8} {'GB':>7} {'GB/s':>7}")
    for name, (count, us, gb) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        print(f"{name[:60]:60} {count:5d} {us:8.0f} {gb:7.3f} {gb / us * 1e6 if us else 0:7.0f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])

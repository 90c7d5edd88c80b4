# Reads a dump of the step-timeline build (step-timeline.patch: LT_TIMELINE_FILE, two graph launches)
# and prints, per kernel of a layer, its share of the step: the time from the kernel ahead of it
# leaving to its own last block leaving (critical), its wait and its tail; then decode attention's
# phases. Diagnostic, as it ran in the thirty-third session: python3 step_timeline.py DUMP
import sys, collections, statistics
path = sys.argv[1]
recs = []
for line in open(path):
    k, key, blk, e, w, x = line.split()
    recs.append((int(k), key, int(blk), int(e), int(w), int(x)))
t0 = min(r[3] for r in recs)
# group per (family, key); split into launches by time gaps (two steps)
fam = lambda k: 'gemv' if k == 0 else 'attn'
groups = collections.defaultdict(list)
for r in recs: groups[(fam(r[0]), r[1])].append(r)
launches = []
for (f, key), rs in groups.items():
    rs.sort(key=lambda r: r[3])
    # split where enter jumps by > 1 ms
    cur = [rs[0]]
    for r in rs[1:]:
        if r[3] - cur[-1][3] > 1_000_000: launches.append((f, key, cur)); cur = [r]
        else: cur.append(r)
    launches.append((f, key, cur))
rows = []
for f, key, rs in launches:
    rows.append(dict(f=f, key=key, n=len(rs), enter=min(r[3] for r in rs)-t0, waited=min(r[4] for r in rs)-t0,
                     waitedMax=max(r[4] for r in rs)-t0, exit=max(r[5] for r in rs)-t0,
                     exitMed=statistics.median(r[5] for r in rs)-t0))
rows.sort(key=lambda r: r['enter'])
# split into steps: a gap between one launch's exit and the next's enter > 20 us
steps = [[rows[0]]]
for r in rows[1:]:
    if r['enter'] - steps[-1][-1]['exit'] > 20_000: steps.append([r])
    else: steps[-1].append(r)
print(f"{len(rows)} launches, steps: {[len(s) for s in steps]}")
names = ['qkv', 'attn', 'o', 'gateup', 'down']
for si, s in enumerate(steps):
    print(f"--- step {si}: first enter {s[0]['enter']/1e3:.1f} us, last exit {s[-1]['exit']/1e3:.1f} us, span {(s[-1]['exit']-s[0]['enter'])/1e3:.1f} us")
    if si > 0:
        print(f"  gap from previous step's last exit: {(s[0]['enter'] - steps[si-1][-1]['exit'])/1e3:.1f} us")
    per = collections.defaultdict(list)
    prev_exit = None
    for i, r in enumerate(s):
        name = names[i % 5] if i < 160 else 'head'
        crit = (r['exit'] - prev_exit) if prev_exit is not None else (r['exit'] - r['enter'])
        per[name].append(dict(crit=crit, run=r['exit'] - r['waited'], waitlag=(r['waited'] - prev_exit) if prev_exit else 0,
                              enterlead=(prev_exit - r['enter']) if prev_exit else 0, tail=r['exit']-r['exitMed'], n=r['n']))
        prev_exit = r['exit']
    tot = 0
    print(f"  {'kernel':7} {'launches':>8} {'blocks':>6} {'critical us (median)':>21} {'sum us':>8} {'exit-wait us':>12} {'wait-prevexit':>13} {'exit med->max':>13}")
    for name in names + ['head']:
        xs = per[name]
        if not xs: continue
        c = [x['crit'] / 1e3 for x in xs]
        tot += sum(c)
        print(f"  {name:7} {len(xs):8} {xs[0]['n']:6} {statistics.median(c):21.2f} {sum(c):8.1f} {statistics.median(x['run']/1e3 for x in xs):12.2f} {statistics.median(x['waitlag']/1e3 for x in xs):13.2f} {statistics.median(x['tail']/1e3 for x in xs):13.2f}")
    print(f"  sum of critical: {tot:.1f} us")

print()
import statistics as st
recs=[l.split() for l in open(path)]
att=[(int(k),key,int(b),int(e),int(w),int(x)) for k,key,b,e,w,x in recs if k!='0']
gem=[(int(k),key,int(b),int(e),int(w),int(x)) for k,key,b,e,w,x in recs if k=='0']
by=collections.defaultdict(list)
for r in att: by[r[1]].append(r)
stats=collections.defaultdict(list)
for key,rs in by.items():
    rs.sort(key=lambda r:r[3])
    # two launches per key: split by time
    parts=[[rs[0]]]
    for r in rs[1:]:
        if r[3]-parts[-1][-1][3]>1_000_000: parts.append([r])
        else: parts[-1].append(r)
    for p in parts:
        e0=min(r[3] for r in p)
        ks=collections.Counter(r[0] for r in p)
        stats['counts'].append(tuple(sorted(ks.items())))
        stats['enter spread'].append((max(r[3] for r in p)-e0)/1e3)
        stats['first wait'].append((min(r[4] for r in p)-e0)/1e3)
        stats['last wait'].append((max(r[4] for r in p)-e0)/1e3)
        ex1=sorted((r[5]-e0)/1e3 for r in p if r[0]==1)
        ex2=sorted((r[5]-e0)/1e3 for r in p if r[0]==2)
        stats['split exit min'].append(ex1[0]); stats['split exit med'].append(st.median(ex1)); stats['split exit max'].append(ex1[-1])
        stats['merge exit min'].append(ex2[0]); stats['merge exit max'].append(ex2[-1])
        stats['merge duration (max exit - max split exit)'].append(ex2[-1]-ex1[-1])
print(collections.Counter(stats.pop('counts')).most_common(3))
for k,v in stats.items(): print(f"{k:45} median {st.median(v):6.2f} us  (min {min(v):6.2f}, max {max(v):6.2f})")

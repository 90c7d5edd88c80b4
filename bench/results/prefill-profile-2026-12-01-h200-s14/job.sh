#!/usr/bin/env bash
# #13: what bounds the wgmma prefill kernel (Nsight Compute, full set) at 8K and 32K, contiguous and paged; its SASS kept.
# As run. (Its SASS split by function was rough: each sass-src*.txt in prof.tar.xz holds more than
# one kernel, so the per-kernel instruction counts it printed are not used anywhere.)
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
NS="8192 32768" PAGED=1 timeout 300 tools/gpu/profile_prefill_attention.sh $OUT/prof
echo "profile exit $? at $(( $(date +%s) - t0 )) s"
cuobjdump -sass build/Release/lighttransfer.node > /tmp/all.sass 2>/dev/null; echo "sass exit $?"
python3 - <<'PY'
import re,os
txt=open('/tmp/all.sass').read()
funcs=re.split(r'\n\s*Function : ',txt)
for f in funcs:
    name=f.split('\n',1)[0]
    if 'prefillWgmmaKernel' in name and '13__nv_bfloat16Li128E' in name:
        tag='src'+re.search(r'KvSourceE(\d)',name).group(1)
        open(os.environ['OUT']+'/sass-'+tag+'.txt','w').write(f)
        ops=re.findall(r'/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)',f)
        from collections import Counter
        c=Counter(o.split('.')[0] for o in ops)
        print(tag,len(ops),'instrs;',', '.join(f'{k} {v}' for k,v in c.most_common(25)))
PY
cd $OUT && tar -cJf prof.tar.xz prof sass-*.txt && rm -rf prof sass-*.txt; ls $OUT
echo "total $(( $(date +%s) - t0 )) s"

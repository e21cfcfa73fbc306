import sys, json
import numpy as np
from gradientflow import Trace, diagnose
for name in sys.argv[1:]:
    t = Trace.load(f".zoo-cache/{name}/trace")
    d = diagnose(t)
    print("==", name, t.n_records, t.n_layers, "steps", t.steps[:3], t.steps[-3:], "meta", {k:v for k,v in t.meta.items() if k not in ('layers',)} if len(str(t.meta))<600 else list(t.meta))
    for f in d.findings:
        print(" ", f.kind, f.severity, f.layers[:6])
        print("   ", f.message[:600])
        print("   ", json.dumps(f.to_dict()["evidence"], default=str)[:1200])

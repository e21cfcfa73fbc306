import sys
import numpy as np
from gradientflow import Trace
from gradientflow.diagnosis.rules._common import log_profile, windows, chain_layers
for name in sys.argv[1:]:
    t = Trace.load(f".zoo-cache/{name}/trace")
    ch = chain_layers(t)
    print("==", name)
    for label, rows in windows(t):
        og = log_profile(t, "out_grad_norm", rows); g = log_profile(t, "grad_norm", rows)
        print(label)
        for j, info in enumerate(t.layers):
            print(f"  {'*' if j in ch else ' '} {info.name[:40]:40s} {info.kind:12s} n={info.n_params:8d} og={og[j]:.3g} g={g[j]:.3g} grms={g[j]/np.sqrt(max(info.n_params,1)):.3g} act={info.input_activation}")

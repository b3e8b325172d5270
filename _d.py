import sys, time, numpy as np
sys.path.insert(0, "tests/hmm")
from test_tied_truth import truth, PAIRS
import tiedsci.hmm as th
from tiedsci.hmm.discover import discover
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
m = truth(seed); L = np.full(20, 100); x, z = m.sample(2000, random_state=seed)
t=time.time()
path = discover(th.GaussianHMM(8, "diag"), x, L, start=sys.argv[2] if len(sys.argv)>2 else "split")
print(time.time()-t)
print(path.table()); print(path.info)
best = path.best_model; print(best.ties)

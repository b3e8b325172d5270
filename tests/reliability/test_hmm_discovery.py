"""Planted-structure recovery of HMM tie discovery (the issue's evidence, within the suite budget).

The tied-truth set-up (8 states in 4 pairs of identical emissions, different transitions;
20 x 100 frames): discovery from a split-grown start, chosen by BIC. Five seeds here (~35 s);
the 10-seed table with AIC and held-out choices is ``examples/tie_discovery.py``'s output.
"""

from __future__ import annotations

import numpy as np

import tiedsci.hmm as th
from tests.hmm.test_tied_truth import PAIRS, truth
from tiedsci.hmm.discovery import Structure, planted_recovery


def test_planted_pairs_are_recovered_at_the_emission_level():
    rows = []
    for seed in range(5):
        m = truth(seed)
        lengths = np.full(20, 100)
        x, z = m.sample(int(lengths.sum()), random_state=seed)
        path = th.discover(th.GaussianHMM(8, "diag"), x, lengths, start="split", n_iter=50,
                           random_state=seed)
        rec = planted_recovery(path.best_model, x, lengths, z, PAIRS)
        rows.append((seed, rec["emission"], rec["strict"], path.steps[path.best].n_free))
        for model, step in zip(path.models, path.steps):
            s = Structure.from_model(model, ("means", "covars"))
            hand = 7 + 8 * 7 + 2 * len(s.parts["means"]) + 2 * len(s.parts["covars"])
            assert step.n_free == model.n_free == hand
    print("\nseed, emission-level, strict, n_free:", rows)
    assert sum(r[1] for r in rows) >= 4

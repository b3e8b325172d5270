"""Every emission family implements the EmissionFamily Protocol, with its signatures."""

import inspect

import pytest

import tiedsci.hmm as th
from tiedsci.hmm.family import EmissionFamily

FAMILIES = [th.GaussianEmission(), th.GaussianEmission("tied"), th.CategoricalEmission(3),
            th.PoissonEmission(), th.GMMEmission(2), th.GMMEmission(2, shared_codebook=True)]
METHODS = [n for n, v in vars(EmissionFamily).items()
           if callable(v) and not n.startswith("_")]


def test_the_protocol_lists_the_contract():
    assert len(METHODS) >= 12
    for name in METHODS:
        assert inspect.getdoc(getattr(EmissionFamily, name)), name


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: repr(f))
def test_each_family_satisfies_the_protocol(family):
    assert isinstance(family, EmissionFamily)
    assert set(family.letters.values())
    for name in METHODS:
        want = list(inspect.signature(getattr(EmissionFamily, name)).parameters)
        got = list(inspect.signature(getattr(type(family), name)).parameters)
        assert got == want, (type(family).__name__, name)


def test_every_estimator_builds_a_family():
    for est in (th.GaussianHMM(2), th.CategoricalHMM(2, n_features=3), th.PoissonHMM(2),
                th.GMMHMM(2, 2), th.TiedMixtureHMM(2, 2)):
        assert isinstance(est._emission(), EmissionFamily)


def test_something_else_is_not_a_family():
    assert not isinstance(object(), EmissionFamily)

"""Every built-in cell's generated gradients against central finite differences (float64)."""

import pytest

from symbptt import fdcheck
from tests.conftest import BUILTIN


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("m,T,truncate", [(1, 1, None), (3, 1, None), (1, 4, None), (3, 4, None),
                                          (2, 5, 2), (1, 6, 3), (2, 4, 1)])
def test_gradients_match_finite_differences(kernels, name, m, T, truncate):
    errors = fdcheck.check(kernels[name], m=m, T=T, truncate=truncate,
                           sizes={"n_x": 3, "n_h": 4, "n_y": 2})
    expected = {"d" + p for p in kernels[name].PARAMETERS} | {"dx"} | {
        f"d{s}0" for s in kernels[name].STATES}
    assert set(errors) == expected
    bad = {k: v for k, v in errors.items() if v > 1e-6}
    assert not bad, bad


def test_truncation_changes_the_gradient(kernels):
    """A check that could not fail would pass here too: truncated and full must differ."""
    import numpy as np

    kernel = kernels["gru"]
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel), 2, 6)
    _, cache = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    full = kernel.backward(cache, problem.upstream)
    cut = kernel.backward(cache, problem.upstream, truncate=2)
    assert not np.allclose(full["dWz"], cut["dWz"])
    assert np.allclose(full["dx"][:, :, 4:], cut["dx"][:, :, 4:])  # last chunk is unaffected

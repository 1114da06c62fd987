"""The C kernels as the tests load them, and a fixture that runs a test once per instruction set
this CPU runs."""

import pytest

from models.skip import c_kernels as native_kernels

kernels = native_kernels.load()
KERNEL_SETS = kernels.kernel_sets if kernels is not None else ()


@pytest.fixture(autouse=True, params=KERNEL_SETS or ["none"])
def kernel_set(request):
    """Every test of a module importing this runs once per instruction set this CPU runs (the
    portable copy included), and the set chosen at load is restored after."""
    if kernels is None:
        yield None
        return
    chosen = kernels.kernel_set
    kernels.choose(request.param)
    try:
        yield request.param
    finally:
        kernels.choose(chosen)

"""JSON number texts for the tests of the readers that read tensors straight into numpy."""

from __future__ import annotations

import numpy as np


def number_texts(rng: np.random.Generator, count: int) -> list[str]:
    """JSON numbers in the forms clients write and the hard ones: shortest float32 and float64
    reprs, long mantissas, small exponents down to subnormals, integers up to 2**53, halfway
    cases of float32 and of doubles."""
    out = []
    f32 = rng.standard_normal(count).astype(np.float32)
    out += [repr(float(v)) for v in f32]  # a client's tolist() of float32
    out += [f"{v:.5f}" for v in rng.standard_normal(count)]
    out += [f"{m}e{e}" for m, e in zip(rng.integers(1, 10 ** 19, count, dtype=np.uint64),
                                        rng.integers(-340, 290, count), strict=True)]
    out += [f"{v:.25e}" for v in rng.standard_normal(count) * 10.0 ** rng.integers(-45, 38,
                                                                                  count)]
    out += [str(int(v)) for v in rng.integers(-(2 ** 53) + 1, 2 ** 53, count)]
    # float32 halfway points: the mean of two neighbouring float32s, written exactly
    a = rng.standard_normal(count).astype(np.float32)
    b = np.nextafter(a, np.float32(np.inf))
    out += [repr((float(x) + float(y)) / 2) for x, y in zip(a, b, strict=True)]
    # double halfway points written in 17 or 18 digits: ties to even
    out += [f"{2 ** 52 + int(k)}.5" for k in rng.integers(0, 2 ** 40, count // 4)]
    out += [f"{2 ** 51 + int(k)}.{rng.choice([25, 75])}" for k in rng.integers(0, 2 ** 40,
                                                                            count // 4)]
    out += ["5e-324", "2.2250738585072014e-308", "1e-46", "-0", "-0.0", "0e0", "1E+2",
            "9007199254740991", "9.007199254740991e15", "1.7976931348623157e-308"]
    # The fast path declines any number of magnitude 2**53 or more (the full path's).
    return [t for t in out if abs(float(t)) < 2.0 ** 53]

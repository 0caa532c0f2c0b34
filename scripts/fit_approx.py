#!/usr/bin/env python3
"""Fits the polynomial coefficients of charrnn's f32 exp and tanh (src/linalg.rs).

Near-minimax Chebyshev fits with mpmath, printed as Rust constants:
  exp(r)  on r in [-ln2/2, ln2/2]           (after range reduction exp(y) = 2^n exp(r)),
  tanh(x) = x + x^3 * P(x^2) on |x| < 0.625 (the rest uses 1 - 2/(exp(2|x|)+1)).
Run: python3 scripts/fit_approx.py   (needs mpmath: pip install mpmath)
"""
import mpmath as mp

mp.mp.dps = 40
ln2 = mp.log(2)
poly, err = mp.chebyfit(mp.exp, [-ln2 / 2, ln2 / 2], 7, error=True)
print("// exp on [-ln2/2, ln2/2], max abs error %.3g" % err)
print("const EXP_P: [f32; 7] = [%s];" % ", ".join(mp.nstr(c, 12) for c in poly))


def p_of_s(s):
    if s == 0:
        return mp.mpf(-1) / 3
    x = mp.sqrt(s)
    return (mp.tanh(x) - x) / x**3


poly, err = mp.chebyfit(p_of_s, [0, mp.mpf("0.625") ** 2], 5, error=True)
print("// tanh(x) = x + x^3 P(x^2) on |x| < 0.625, max abs error of P %.3g" % err)
print("const TANH_P: [f32; 5] = [%s];" % ", ".join(mp.nstr(c, 12) for c in poly))

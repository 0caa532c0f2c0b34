#!/usr/bin/env python3
"""Fits the polynomial coefficients of charrnn's f32 exp (src/linalg/mod.rs).

A near-minimax Chebyshev fit with mpmath, printed as a Rust constant:
  exp(r) on r in [-ln2/2, ln2/2]   (after range reduction exp(y) = 2^n exp(r)).
tanh uses the same polynomial less its constant term, e^r - 1 = r * Q(r), so it needs no
fit of its own: tanh|x| = m / (m + 2) with m = e^(2|x|) - 1.
Run: python3 scripts/fit_approx.py   (needs mpmath: pip install mpmath)
"""
import mpmath as mp

mp.mp.dps = 40
ln2 = mp.log(2)
poly, err = mp.chebyfit(mp.exp, [-ln2 / 2, ln2 / 2], 7, error=True)
print("// exp on [-ln2/2, ln2/2], max abs error %.3g" % err)
print("const EXP_P: [f32; 7] = [%s];" % ", ".join(mp.nstr(c, 12) for c in poly))

//! The f32 exp and tanh of [`super::Float`]: branch-free polynomials whose every step
//! vectorises, range reduction included, so that the kernels of [`super::kernels`] and the
//! gates run them 16 lanes at a time. (f64 uses libm, so gradient checks are exact.)

// Coefficients from scripts/fit_approx.py (a near-minimax Chebyshev fit with mpmath), highest
// degree first, kept to the digits the script printed.
#[allow(clippy::excessive_precision)]
const EXP_P: [f32; 7] = [
    0.001_394_110_8,
    0.008_375_126,
    0.041_666_353,
    0.166_664_16,
    0.500_000_0,
    1.000_000_0,
    1.0,
];
// ln 2 split in two so that n·LN2_HI is exact for |n| < 2^9.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2²³: adding it to |v| < 2²² rounds v to an integer held in the low mantissa bits.
const ROUNDER: f32 = 12_582_912.0;

/// a·b + c rounded once: one instruction in the AVX2 and AVX-512 kernels, libm's `fmaf` on
/// the portable path (slower, and the same bits).
#[inline(always)]
fn madd(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

/// y = n·ln 2 + r with n = round(y / ln 2), |r| ≤ ln2/2, for |y| ≤ 88: returns (r, 2ⁿ).
///
/// n is rounded by adding [`ROUNDER`] and 2ⁿ is built from the sum's bits, with float adds and
/// integer shifts only: `n as i32` is a saturating conversion, which LLVM compiles to a scalar
/// `vcvttss2si` with NaN and range checks in every lane.
#[inline(always)]
fn reduce(y: f32) -> (f32, f32) {
    let t = y * std::f32::consts::LOG2_E + ROUNDER;
    let nf = t - ROUNDER;
    // t's bits are those of 1.5·2²³ plus n; shifting by 23 drops all but n + 127.
    let scale = f32::from_bits(t.to_bits().wrapping_add(127) << 23);
    (y - nf * LN2_HI - nf * LN2_LO, scale)
}

/// eʸ = 2ⁿ·e^r, e^r by a degree-6 polynomial.
#[inline(always)]
pub(super) fn exp_f32(y: f32) -> f32 {
    let (r, scale) = reduce(y.clamp(-87.0, 88.0));
    EXP_P.iter().fold(0.0, |acc, &c| madd(acc, r, c)) * scale
}

/// tanh x = sign(x)·m/(m + 2) with m = e^{2|x|} − 1, one branch-free path for every x.
///
/// With 2|x| reduced as in [`exp_f32`], e^r − 1 = r·Q(r), Q the exp polynomial less its
/// constant 1, and m = 2ⁿ·(e^r − 1) + (2ⁿ − 1), which keeps its relative accuracy as x → 0 (no
/// 1 − 2/(e + 1) cancellation, so no second polynomial for small x). |x| is clamped to 9,
/// where tanh is 1 in f32.
#[inline(always)]
pub(super) fn tanh_f32(x: f32) -> f32 {
    // A NaN stays NaN (and so does the result): `f32::min` would turn it into 9.
    let a = if x.abs() > 9.0 { 9.0 } else { x.abs() };
    let (r, scale) = reduce(a + a);
    let q = EXP_P[..6].iter().fold(0.0, |acc, &c| madd(acc, r, c));
    let m = madd(scale, r * q, scale - 1.0);
    (m / (m + 2.0)).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The f32 approximations against libm in f64, over a dense grid that covers saturation.
    #[test]
    fn fast_exp_and_tanh_match_libm() {
        let (mut worst_exp, mut worst_tanh, mut worst_tanh_rel) = (0.0f64, 0.0f64, 0.0f64);
        for i in -2_000_000..=2_000_000 {
            let x = i as f32 * 4.3e-5;
            let e = (exp_f32(x) as f64 - (x as f64).exp()).abs() / (x as f64).exp();
            worst_exp = worst_exp.max(e);
            let t = (x as f64).tanh();
            worst_tanh = worst_tanh.max((tanh_f32(x) as f64 - t).abs());
            if t != 0.0 {
                worst_tanh_rel = worst_tanh_rel.max((tanh_f32(x) as f64 - t).abs() / t.abs());
            }
        }
        for x in [-200.0f32, -87.5, -30.0, 30.0, 87.9, 200.0] {
            assert!(exp_f32(x).is_finite() && exp_f32(x) >= 0.0, "exp({x})");
            assert_eq!(tanh_f32(x), x.signum(), "tanh({x}) saturates");
        }
        assert!(
            tanh_f32(f32::NAN).is_nan() && exp_f32(f32::NAN).is_nan(),
            "NaN propagates"
        );
        assert!(worst_exp < 3e-7, "exp relative error {worst_exp:e}");
        assert!(worst_tanh < 3e-7, "tanh absolute error {worst_tanh:e}");
        assert!(
            worst_tanh_rel < 3e-7,
            "tanh relative error {worst_tanh_rel:e}"
        );
        for x in [1e-30f32, -1e-20, 1e-10, 3e-5, -0.01] {
            let rel = (tanh_f32(x) as f64 - (x as f64).tanh()).abs() / (x as f64).tanh().abs();
            assert!(rel < 3e-7, "tanh({x}) relative error {rel:e}");
        }
    }
}

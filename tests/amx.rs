//! The bf16 product on AMX tiles (`linalg::amx`) agrees with its software reference to within
//! f32 rounding of its K additions (not bit for bit: the hardware's accumulation inside a
//! tile is not the sequential round-to-nearest chain of Intel's pseudocode), and the
//! reference is the bf16-rounded product to within the same bound. The AMX test needs a
//! CPU with AMX-BF16 (Intel Sapphire Rapids or later) on Linux: it is ignored elsewhere, and
//! `.ci/run` runs it where `/proc/cpuinfo` lists `amx_bf16`.
#![cfg(target_arch = "x86_64")]

mod common;

use charrnn::linalg::amx::{self, from_bf16, to_bf16, BfPacked};
use ndarray::Array2;
use rand::Rng;

/// Shapes with remainders in every dimension (tiles are 16 rows, 32 k, 32-column blocks),
/// whole tiles, and the LSTM 2 × 512 per-step product.
const SHAPES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (16, 32, 16),
    (32, 64, 32),
    (17, 33, 31),
    (5, 65, 70),
    (33, 100, 97),
    (64, 512, 2048),
    (130, 75, 65),
];

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = common::rng(seed);
    Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-1.0f32..1.0))
}

#[test]
#[ignore = "needs a CPU with AMX-BF16 (Intel Sapphire Rapids or later) on Linux; .ci/run runs it where /proc/cpuinfo lists amx_bf16"]
fn amx_bf16_product_agrees_with_the_reference() {
    assert!(
        amx::available(),
        "AMX bf16 is not available here (CPUID or the kernel's arch_prctl permission)"
    );
    let mut worst = 0.0f64;
    for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
        let (a, b, c0) = (
            random(m, k, 3 * s as u64),
            random(k, n, 3 * s as u64 + 1),
            random(m, n, 3 * s as u64 + 2),
        );
        let mut want = c0.clone();
        amx::gemm_bf16_reference(a.view(), b.view(), &mut want.view_mut());
        let mut got = c0.clone();
        amx::gemm_bf16(a.view(), &BfPacked::pack(b.view()), &mut got.view_mut());
        let r = |x: f32| f64::from(from_bf16(to_bf16(x)));
        for i in 0..m {
            for j in 0..n {
                // The scale of the sum: |c| plus every |product|; each of the K additions of
                // either side rounds by at most half an ulp of f32 of that scale.
                let size = f64::from(c0[[i, j]].abs())
                    + (0..k)
                        .map(|p| (r(a[[i, p]]) * r(b[[p, j]])).abs())
                        .sum::<f64>();
                let err = (f64::from(got[[i, j]]) - f64::from(want[[i, j]])).abs();
                let bound = k as f64 * f64::from(f32::EPSILON) * size;
                worst = worst.max(err / bound);
                assert!(
                    err <= bound,
                    "({m}, {k}, {n}) [{i}, {j}]: AMX {} vs reference {} (bound {bound})",
                    got[[i, j]],
                    want[[i, j]]
                );
            }
        }
    }
    println!("largest difference: {worst:.4} of the bound");
}

/// The reference is the exact product of the bf16-rounded operands, to within f32 rounding
/// of each of its K additions.
#[test]
fn the_reference_is_the_rounded_product() {
    for (s, &(m, k, n)) in SHAPES.iter().enumerate().take(6) {
        let (a, b) = (random(m, k, 10 + s as u64), random(k, n, 20 + s as u64));
        let mut c = Array2::<f32>::zeros((m, n));
        amx::gemm_bf16_reference(a.view(), b.view(), &mut c.view_mut());
        let r = |x: f32| f64::from(from_bf16(to_bf16(x)));
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut size) = (0.0f64, 0.0f64);
                for p in 0..k {
                    exact += r(a[[i, p]]) * r(b[[p, j]]);
                    size += (r(a[[i, p]]) * r(b[[p, j]])).abs();
                }
                let bound = k as f64 * f64::from(f32::EPSILON) * size;
                assert!(
                    (f64::from(c[[i, j]]) - exact).abs() <= bound,
                    "({m}, {k}, {n}) [{i}, {j}]: {} vs {exact} (bound {bound})",
                    c[[i, j]]
                );
            }
        }
        // And bf16 operands are what it multiplies: the f32 product differs.
        let f32_product = a.dot(&b);
        assert!(
            m * n < 4 || f32_product.iter().zip(c.iter()).any(|(x, y)| x != y),
            "({m}, {k}, {n}): the reference equals the f32 product"
        );
    }
}

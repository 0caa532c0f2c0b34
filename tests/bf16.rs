//! The bf16 products (`linalg::bf16`) against their software reference, on shapes with
//! remainders in every dimension (tiles are 16 rows, 32 k, 32-column blocks; the vector
//! kernel's tile is 8 rows).
//!
//! - AVX512-BF16 (`vdpbf16ps`) equals the reference in Intel's documented order (per pair,
//!   the odd product first, each addition rounded to nearest even) bit for bit.
//! - AMX (`tdpbf16ps`) agrees with the sequential reference to within f32 rounding of its K
//!   additions: the hardware's order inside a tile is not the documented chain (see
//!   `linalg::bf16::amx`).
//!
//! The kernel tests need the CPU's bf16 units: they are ignored elsewhere, and `.ci/run` runs
//! each where `/proc/cpuinfo` lists `avx512_bf16` or `amx_bf16`.
#![cfg(target_arch = "x86_64")]

mod common;

use charrnn::linalg::bf16::{self, from_bf16, to_bf16, BfKernel, BfPacked, PairOrder, Start};
use ndarray::{Array2, ShapeBuilder};
use rand::Rng;

/// Shapes with remainders in every dimension, whole tiles, and the LSTM 2 × 512 per-step
/// product.
const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (16, 32, 16),
    (32, 64, 32),
    (17, 33, 31),
    (5, 65, 70),
    (33, 100, 97),
    (64, 512, 2048),
    (130, 75, 65),
    (9, 2, 33),
];

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = common::rng(seed);
    Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-1.0f32..1.0))
}

/// The same values in column-major order (so that views of it have other strides).
fn column_major(x: &Array2<f32>) -> Array2<f32> {
    let mut y = Array2::zeros(x.dim().f());
    y.assign(x);
    y
}

/// Runs `kernel` on every shape, with c accumulated, overwritten, and started at a row, a and c in row- and
/// column-major order, against the reference in `order`; `bound(k, size)` is the largest
/// difference allowed for an element whose sum has scale `size`. Returns the largest
/// difference as a fraction of the bound (0 when exact).
fn check(kernel: BfKernel, order: PairOrder, bound: impl Fn(usize, f64) -> f64) -> f64 {
    // The kernel choice is per process: one kernel test at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    bf16::set_kernel(kernel).expect("the kernel runs on this CPU");
    let mut worst = 0.0f64;
    for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
        let s = s as u64;
        let (a, b, c0) = (
            random(m, k, 3 * s),
            random(k, n, 3 * s + 1),
            random(m, n, 3 * s + 2),
        );
        let packed = BfPacked::new(&b.view());
        // The sums start at c, at zero, or at one row (the bias) in every row of c.
        let row = random(1, n, 3 * s + 3).into_raw_vec_and_offset().0;
        for from in ["c", "zero", "row"] {
            let start = match from {
                "c" => c0.clone(),
                "zero" => Array2::zeros((m, n)),
                _ => Array2::from_shape_fn((m, n), |(_, j)| row[j]),
            };
            let mut want = start.clone();
            bf16::gemm_reference(&a.view(), &b.view(), order, &mut want.view_mut());
            for strided in [false, true] {
                let (a, mut got) = if strided {
                    (column_major(&a), column_major(&c0))
                } else {
                    (a.clone(), c0.clone())
                };
                let from_start = match from {
                    "c" => Start::C,
                    "zero" => Start::Zero,
                    _ => Start::Row(&row),
                };
                bf16::gemm_from(&a.view(), &packed, from_start, &mut got.view_mut());
                let r = |x: f32| f64::from(from_bf16(to_bf16(x)));
                for i in 0..m {
                    for j in 0..n {
                        // The scale of the sum: |c| plus every |product|.
                        let size = f64::from(start[[i, j]].abs())
                            + (0..k)
                                .map(|p| (r(a[[i, p]]) * r(b[[p, j]])).abs())
                                .sum::<f64>();
                        let err = (f64::from(got[[i, j]]) - f64::from(want[[i, j]])).abs();
                        let allowed = bound(k, size);
                        assert!(
                            err <= allowed,
                            "{kernel:?} ({m}, {k}, {n}) [{i}, {j}] from {from} \
                             strided {strided}: {} vs reference {} (bound {allowed})",
                            got[[i, j]],
                            want[[i, j]]
                        );
                        if allowed > 0.0 {
                            worst = worst.max(err / allowed);
                        }
                    }
                }
            }
        }
    }
    worst
}

#[test]
#[ignore = "needs a CPU with AVX512-BF16 (AMD Zen 4 or later, Intel Cooper Lake or later); .ci/run runs it where /proc/cpuinfo lists avx512_bf16"]
fn avx512_bf16_product_equals_the_documented_order_bit_for_bit() {
    check(BfKernel::Avx512Bf16, PairOrder::OddFirst, |_, _| 0.0);
}

#[test]
#[ignore = "needs a CPU with AMX-BF16 (Intel Sapphire Rapids or later) on Linux; .ci/run runs it where /proc/cpuinfo lists amx_bf16"]
fn amx_bf16_product_agrees_with_the_reference() {
    // Each of the K additions of either side rounds by at most half an ulp of f32 of the
    // sum's scale.
    let worst = check(BfKernel::Amx, PairOrder::Sequential, |k, size| {
        k as f64 * f64::from(f32::EPSILON) * size
    });
    println!("largest difference: {worst:.4} of the bound");
}

/// The reference is the exact product of the bf16-rounded operands, to within f32 rounding
/// of each of its K additions, in either order.
#[test]
fn the_reference_is_the_rounded_product() {
    for (s, &(m, k, n)) in SHAPES.iter().enumerate().take(6) {
        let (a, b) = (random(m, k, 10 + s as u64), random(k, n, 20 + s as u64));
        for order in [PairOrder::Sequential, PairOrder::OddFirst] {
            let mut c = Array2::<f32>::zeros((m, n));
            bf16::gemm_reference(&a.view(), &b.view(), order, &mut c.view_mut());
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
}

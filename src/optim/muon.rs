//! Muon's half of [`super::Optimizer::Muon`]: the weight matrices that map hidden states are
//! updated by their gradient's Nesterov momentum, orthogonalised block by block with a
//! Newton–Schulz iteration (Keller Jordan's Muon, as in the nanoGPT speedrun), so every
//! direction of a block moves at the same rate whatever its gradient's scale.
//!
//! For a block G (r × c, r ≤ c; a tall block is transposed first), X₀ = G / (‖G‖_F + 1e−7)
//! and five times X ← a·X + (b·A + c·A·A)·X with A = X·Xᵀ and (a, b, c) = (3.4445, −4.7750,
//! 2.0315): the odd polynomial that drives every singular value of X towards 1 (to within
//! about ±0.3, which is what the update needs) in a few products.

use ndarray::{s, Array2, ArrayView2, Zip};
use rayon::prelude::*;

use crate::linalg::{gemm, Float};

/// The Newton–Schulz coefficients and step count.
const NS: (f64, f64, f64, usize) = (3.4445, -4.7750, 2.0315, 5);

/// A weight matrix updated by Muon: where it lies in the flat buffer, its shape (row-major),
/// and how many side-by-side column blocks (the gates) are orthogonalised separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matrix {
    /// Offset of its first element.
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Columns (`blocks` blocks of `cols / blocks`).
    pub cols: usize,
    /// Column blocks, each orthogonalised on its own.
    pub blocks: usize,
}

impl Matrix {
    /// Its elements' range in the flat buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.rows * self.cols
    }
}

/// The orthogonalised `g` (r × c): X after the Newton–Schulz iteration above.
pub fn orthogonalize<F: Float>(g: ArrayView2<F>) -> Array2<F> {
    let (a, b, c, steps) = NS;
    let tall = g.nrows() > g.ncols();
    let mut x = if tall { g.t().to_owned() } else { g.to_owned() };
    let norm = x
        .iter()
        .map(|&v| v.to_f64().unwrap_or(f64::NAN).powi(2))
        .sum::<f64>()
        .sqrt();
    let inv = F::c(1.0 / (norm + 1e-7));
    x.mapv_inplace(|v| v * inv);
    let r = x.nrows();
    let (mut gram, mut poly, mut next) = (
        Array2::<F>::zeros((r, r)),
        Array2::<F>::zeros((r, r)),
        Array2::<F>::zeros(x.dim()),
    );
    for _ in 0..steps {
        // A = X·Xᵀ; B = b·A + c·A·A; X ← a·X + B·X.
        gemm(F::one(), &x.view(), &x.t(), F::zero(), &mut gram.view_mut());
        gemm(
            F::c(c),
            &gram.view(),
            &gram.view(),
            F::zero(),
            &mut poly.view_mut(),
        );
        poly.scaled_add(F::c(b), &gram);
        gemm(
            F::one(),
            &poly.view(),
            &x.view(),
            F::zero(),
            &mut next.view_mut(),
        );
        next.scaled_add(F::c(a), &x);
        std::mem::swap(&mut x, &mut next);
    }
    if tall {
        x.t().to_owned()
    } else {
        x
    }
}

/// One Muon update of the matrices `mats` in `p`, from the gradient `g` transformed by
/// `clip`, with momentum `mu` kept in `m`, at learning rate `lr`: m ← μ·m + g, then
/// p ← p − lr·√max(1, r/c)·orth(g + μ·m) for every block (r × c) of every matrix. Blocks are
/// orthogonalised in parallel inside a rayon pool; each is the same bits either way.
pub(super) fn update<F: Float>(
    mats: &[Matrix],
    p: &mut [F],
    g: &[F],
    m: &mut [F],
    mu: f64,
    lr: f64,
    clip: &(impl Fn(F) -> F + Sync),
) {
    let mu = F::c(mu);
    // The Nesterov direction of every block, after the momentum step.
    let mut dirs = Vec::new();
    for mat in mats {
        let range = mat.range();
        let (gm, mm) = (&g[range.clone()], &mut m[range]);
        let mut u = Array2::<F>::zeros((mat.rows, mat.cols));
        Zip::from(&mut u)
            .and(&ndarray::ArrayView2::from_shape((mat.rows, mat.cols), gm).expect("shape"))
            .and(&mut ndarray::ArrayViewMut2::from_shape((mat.rows, mat.cols), mm).expect("shape"))
            .for_each(|u, &g, m| {
                let g = clip(g);
                *m = mu * *m + g;
                *u = g + mu * *m;
            });
        let w = mat.cols / mat.blocks;
        for k in 0..mat.blocks {
            dirs.push((*mat, k, u.slice(s![.., k * w..(k + 1) * w]).to_owned()));
        }
    }
    let orth = |(mat, k, u): &(Matrix, usize, Array2<F>)| (*mat, *k, orthogonalize(u.view()));
    let done: Vec<(Matrix, usize, Array2<F>)> = if rayon::current_thread_index().is_some() {
        dirs.par_iter().map(orth).collect()
    } else {
        dirs.iter().map(orth).collect()
    };
    for (mat, k, o) in done {
        let w = mat.cols / mat.blocks;
        let step = F::c(lr * (mat.rows as f64 / w as f64).max(1.0).sqrt());
        let pm = &mut p[mat.range()];
        for (i, row) in o.outer_iter().enumerate() {
            let at = i * mat.cols + k * w;
            for (p, &o) in pm[at..at + w].iter_mut().zip(row) {
                *p -= step * o;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{ClipMode, OptState, Optimizer};

    /// Row-major r × c matrix product by plain loops.
    fn matmul(a: &[f64], b: &[f64], r: usize, k: usize, c: usize) -> Vec<f64> {
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                out[i * c + j] = (0..k).map(|q| a[i * k + q] * b[q * c + j]).sum();
            }
        }
        out
    }

    fn transpose(a: &[f64], r: usize, c: usize) -> Vec<f64> {
        (0..c * r).map(|x| a[(x % r) * c + x / r]).collect()
    }

    /// The iteration written out with plain loops on a wide r × c matrix.
    fn newton_schulz(g: &[f64], r: usize, c: usize) -> Vec<f64> {
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt() + 1e-7;
        let mut x: Vec<f64> = g.iter().map(|v| v / norm).collect();
        for _ in 0..5 {
            let a = matmul(&x, &transpose(&x, r, c), r, c, r);
            let aa = matmul(&a, &a, r, r, r);
            let b: Vec<f64> = a
                .iter()
                .zip(&aa)
                .map(|(a, aa)| -4.7750 * a + 2.0315 * aa)
                .collect();
            let bx = matmul(&b, &x, r, r, c);
            x = x.iter().zip(&bx).map(|(x, bx)| 3.4445 * x + bx).collect();
        }
        x
    }

    /// Two Muon steps on a buffer of [2 Adam values | a 2 × 4 matrix of 2 blocks | 1 Adam
    /// value] against the update written out by hand: Nesterov momentum, each 2 × 2 block
    /// orthogonalised on its own, Adam (bias-corrected) for the rest, all after clipping.
    #[test]
    fn muon_follows_its_formula() {
        let (mu, k, lr, clip) = (0.95, 5.0, 0.01, 0.6);
        let rule = Optimizer::Muon {
            momentum: mu,
            matrix_lr: k,
            beta1: 0.9,
            beta2: 0.999,
            eps: crate::optim::DEFAULT_EPS,
        };
        let mat = Matrix {
            offset: 2,
            rows: 2,
            cols: 4,
            blocks: 2,
        };
        let g1 = [0.3, -0.2, 0.5, -1.0, 0.25, 0.4, 2.0, 0.1, -0.7, 0.9, 0.05];
        let g2 = [
            -0.1, 0.4, -0.3, 0.8, 0.6, -0.2, 0.35, -0.45, 0.15, 0.5, -0.8,
        ];
        let mut st = OptState::<f64>::new(rule, 11).with_matrices(vec![mat]);
        let mut p = [1.0f64; 11];
        st.step(&mut p, &g1, lr, clip, ClipMode::Elementwise, 1);
        st.step(&mut p, &g2, lr, clip, ClipMode::Elementwise, 2);

        let c = |x: f64| x.clamp(-clip, clip);
        let mut want = [1.0f64; 11];
        // Adam on elements 0, 1 and 10.
        for i in [0, 1, 10] {
            let (a, b) = (c(g1[i]), c(g2[i]));
            let (m1, v1) = (0.1 * a, 0.001 * a * a);
            let p1 = 1.0 - lr * (m1 / 0.1) / ((v1 / 0.001).sqrt() + 1e-8);
            let (m2, v2) = (0.9 * m1 + 0.1 * b, 0.999 * v1 + 0.001 * b * b);
            let (c1, c2) = (1.0 - 0.9f64.powi(2), 1.0 - 0.999f64.powi(2));
            want[i] = p1 - lr * (m2 / c1) / ((v2 / c2).sqrt() + 1e-8);
        }
        // Muon on the matrix, block by block.
        let mut m = [0.0f64; 8];
        for g in [&g1, &g2] {
            let gm: Vec<f64> = g[2..10].iter().map(|&x| c(x)).collect();
            let u: Vec<f64> = (0..8)
                .map(|i| {
                    m[i] = mu * m[i] + gm[i];
                    gm[i] + mu * m[i]
                })
                .collect();
            for blk in 0..2 {
                let block: Vec<f64> = (0..4).map(|q| u[(q / 2) * 4 + blk * 2 + q % 2]).collect();
                let o = newton_schulz(&block, 2, 2);
                for q in 0..4 {
                    want[2 + (q / 2) * 4 + blk * 2 + q % 2] -= lr * k * o[q];
                }
            }
        }
        for i in 0..11 {
            assert!(
                (p[i] - want[i]).abs() < 1e-12,
                "[{i}]: {} vs {}",
                p[i],
                want[i]
            );
        }
        // The orthogonalised steps are not the gradient's shape: a block's update has the
        // same size in every direction however uneven its gradient.
        assert!((p[6] - 1.0).abs() > 1e-3 && (p[9] - 1.0).abs() > 1e-3);
    }

    /// A tall block is orthogonalised through its transpose, and scaled by √(r/c).
    #[test]
    fn a_tall_block_is_scaled_by_the_root_of_its_aspect() {
        let g = [0.2, -0.4, 0.9, 0.3, -0.5, 0.1, 0.7, 0.8];
        let o = orthogonalize::<f64>(ArrayView2::from_shape((4, 2), &g).unwrap());
        let want = transpose(&newton_schulz(&transpose(&g, 4, 2), 2, 4), 2, 4);
        for (a, b) in o.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        let rule = Optimizer::Muon {
            momentum: 0.0,
            matrix_lr: 1.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: crate::optim::DEFAULT_EPS,
        };
        let mat = Matrix {
            offset: 0,
            rows: 4,
            cols: 2,
            blocks: 1,
        };
        let mut st = OptState::<f64>::new(rule, 8).with_matrices(vec![mat]);
        let mut p = [0.0f64; 8];
        st.step(&mut p, &g, 0.1, 10.0, ClipMode::Norm, 1);
        for (a, b) in p.iter().zip(&want) {
            assert!((a + 0.1 * 2f64.sqrt() * b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    /// X·Xᵀ of the orthogonalised matrix is near the identity: every singular value within
    /// the iteration's band (about 0.7 to 1.2) whatever the scale of the input.
    #[test]
    fn the_iteration_drives_singular_values_towards_one() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for (r, c, scale) in [(16, 16, 1e-3), (8, 24, 50.0), (24, 8, 1.0)] {
            let g = Array2::from_shape_fn((r, c), |_| next() * scale);
            let o = orthogonalize::<f64>(g.view());
            assert_eq!(o.dim(), (r, c));
            let small = if r <= c { o.dot(&o.t()) } else { o.t().dot(&o) };
            // The squared singular values are the Gram matrix's eigenvalues: its trace and
            // its Frobenius norm bound them. All in [0.5, 1.45] ⇒ mean in that band and
            // ‖G − I‖_F small relative to √n.
            let n = small.nrows() as f64;
            let mean = small.diag().sum() / n;
            let off = (&small - &Array2::<f64>::eye(small.nrows()))
                .iter()
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt();
            assert!((0.5..1.45).contains(&mean), "{r}×{c}: mean σ² {mean}");
            assert!(off < 0.5 * n.sqrt(), "{r}×{c}: ‖XXᵀ − I‖ = {off}");
        }
    }
}

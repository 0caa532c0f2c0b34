//! charrnn's own hot loops, each compiled for every [`super::Isa`] by `multiversion!`: tanh
//! and its backward, the fused softmax + cross-entropy, and the row loops of the embedding
//! gather, its scatter-add and the bias gradients.

use super::{multiversion, Float};

multiversion! {
    /// [`softmax_xent_grad`] over every row of `z` ((N, V) row-major, `cols` = V) with targets
    /// `ys` (N); returns the summed loss.
    pub fn softmax_xent_rows<F: Float>(z: &mut [F], cols: usize, ys: &[u32], scale: F) -> F {
        let mut loss = F::zero();
        for (row, &y) in z.chunks_exact_mut(cols).zip(ys) {
            loss += softmax_xent_grad(row, y as usize, scale);
        }
        loss
    }
}

multiversion! {
    /// [`xent`] summed over every row of `z` ((N, V) row-major, `cols` = V), targets `ys`.
    pub fn xent_rows<F: Float>(z: &[F], cols: usize, ys: &[u32]) -> F {
        let mut loss = F::zero();
        for (row, &y) in z.chunks_exact(cols).zip(ys) {
            loss += xent(row, y as usize);
        }
        loss
    }
}

multiversion! {
    /// `out[i] = tanh(a[i])` (the model's tanh).
    pub fn tanh_into<F: Float>(out: &mut [F], a: &[F]) {
        for (o, &a) in out.iter_mut().zip(a) {
            *o = a.tanh_m();
        }
    }
}

multiversion! {
    /// Backward of tanh through its outputs: `d[i] = dy[i] · (1 − y[i]²)`.
    pub fn tanh_backward<F: Float>(d: &mut [F], dy: &[F], y: &[F]) {
        for ((d, &dy), &y) in d.iter_mut().zip(dy).zip(y) {
            *d = dy * (F::one() - y * y);
        }
    }
}

multiversion! {
    /// `out[r] += rows[r]` summed over every row of `rows` ((N, len) row-major, len =
    /// `out.len()`), rows in order: the bias gradients.
    pub fn add_rows<F: Float>(out: &mut [F], rows: &[F]) {
        for row in rows.chunks_exact(out.len()) {
            for (o, &d) in out.iter_mut().zip(row) {
                *o += d;
            }
        }
    }
}

multiversion! {
    /// `out` ((N, cols)) row n ← `table` row `ids[n]` + `bias`: the gather of layer 0's
    /// input product from its (V, cols) table.
    pub fn gather_rows_plus<F: Float>(out: &mut [F], table: &[F], ids: &[u32], bias: &[F]) {
        let cols = bias.len();
        for (row, &x) in out.chunks_exact_mut(cols).zip(ids) {
            let e = &table[x as usize * cols..(x as usize + 1) * cols];
            for ((r, &e), &b) in row.iter_mut().zip(e).zip(bias) {
                *r = e + b;
            }
        }
    }
}

multiversion! {
    /// `table` row `ids[n]` += `rows` row n, in order: the transpose of the gather (the
    /// embedding table's gradient).
    pub fn scatter_add_rows<F: Float>(table: &mut [F], rows: &[F], ids: &[u32], cols: usize) {
        for (row, &x) in rows.chunks_exact(cols).zip(ids) {
            let t = &mut table[x as usize * cols..(x as usize + 1) * cols];
            for (t, &d) in t.iter_mut().zip(row) {
                *t += d;
            }
        }
    }
}

/// Fused, numerically stable softmax + cross-entropy + gradient over one row of logits.
///
/// `z`: (V) logits, overwritten with `scale · (softmax(z) − onehot(y))`, the gradient of
/// `scale · (−ln softmax(z)[y])`. Returns `−ln softmax(z)[y]` (unscaled, in nats).
/// Subtracting the row maximum keeps every `exp` in (0, 1], so logits like `[1000, 0]` work.
#[inline(always)]
pub fn softmax_xent_grad<F: Float>(z: &mut [F], y: usize, scale: F) -> F {
    let max = max_of(z);
    let zy = z[y];
    for v in z.iter_mut() {
        *v = (*v - max).exp_m();
    }
    let sum = sum_of(z);
    let k = scale / sum;
    for v in z.iter_mut() {
        *v *= k;
    }
    z[y] -= scale;
    sum.ln() + max - zy
}

/// Numerically stable `−ln softmax(z)[y]` without touching `z` (forward-only evaluation).
#[inline(always)]
pub fn xent<F: Float>(z: &[F], y: usize) -> F {
    let max = max_of(z);
    let mut acc = [F::zero(); LANES];
    let chunks = z.chunks_exact(LANES);
    let tail: F = chunks.remainder().iter().map(|&v| (v - max).exp_m()).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += (v - max).exp_m();
        }
    }
    (acc.iter().copied().sum::<F>() + tail).ln() + max - z[y]
}

// Reductions in LANES independent accumulators: a single running sum or max is a serial
// dependency the compiler may not reorder, so it would stay scalar; eight of them vectorise.
const LANES: usize = 8;

/// Largest element (NaN elements are skipped; a NaN logit still poisons the loss via exp).
#[inline(always)]
fn max_of<F: Float>(z: &[F]) -> F {
    let mut acc = [F::neg_infinity(); LANES];
    let chunks = z.chunks_exact(LANES);
    let mut m = chunks
        .remainder()
        .iter()
        .fold(F::neg_infinity(), |m, &v| if v > m { v } else { m });
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            if v > *a {
                *a = v;
            }
        }
    }
    for a in acc {
        if a > m {
            m = a;
        }
    }
    m
}

/// Sum of the elements.
#[inline(always)]
fn sum_of<F: Float>(z: &[F]) -> F {
    let mut acc = [F::zero(); LANES];
    let chunks = z.chunks_exact(LANES);
    let tail: F = chunks.remainder().iter().copied().sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().copied().sum::<F>() + tail
}

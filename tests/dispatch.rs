//! One binary for every x86-64: charrnn's own kernels are compiled for AVX-512, AVX2+FMA and
//! baseline x86-64 and chosen at run time. Every path this CPU runs must give the same bits as
//! the portable one, kernel by kernel and over whole training steps of every cell. Its own
//! test binary: the instruction set is a process-wide setting.

use charrnn::data::{Corpus, SymbolKind};
use charrnn::linalg::{self, set_isa, Isa};
use charrnn::model::CellKind;
use charrnn::optim::Optimizer;
use charrnn::train::Trainer;
use rand::{Rng, SeedableRng};

mod common;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Inputs that cover the range reductions of tanh and exp (n = 0, 1, …), the clamps and
/// saturation.
fn inputs(n: usize) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut v: Vec<f32> = (0..n).map(|_| r.random_range(-12.0..12.0)).collect();
    v.extend([
        0.0, -0.0, 0.17, -0.18, 8.99, 9.0, -9.01, 88.0, -88.0, 1e-30, 200.0, -200.0, 1e-20,
    ]);
    v
}

/// What every kernel computes under the current instruction set.
fn kernels() -> Vec<Vec<u32>> {
    let x = inputs(1003);
    let mut t = vec![0.0f32; x.len()];
    linalg::tanh_into(&mut t, &x);
    let mut d = vec![0.0f32; x.len()];
    linalg::tanh_backward(&mut d, &x, &t);
    let (v, rows) = (67, 11);
    let mut z: Vec<f32> = x[..v * rows].to_vec();
    let ys: Vec<u32> = (0..rows as u32).map(|i| (i * 7) % v as u32).collect();
    let fwd = linalg::xent_rows(&z, v, &ys);
    let loss = linalg::softmax_xent_rows(&mut z, v, &ys, 0.5);
    // The packed recurrent product: rows and columns that fill no whole tile or panel, from a
    // row-major weight and from a transposed view, set and accumulated.
    let (m, k, n) = (13, 33, 75);
    let x = inputs(3000);
    let w = ndarray::Array2::from_shape_vec((k, n), x[..k * n].to_vec()).unwrap();
    let mut packed = linalg::packed::Packed::new();
    let mut products = Vec::new();
    let wt = w.t().to_owned();
    for view in [w.view(), wt.t()] {
        packed.pack(&view);
        let mut y = x[..m * n].to_vec();
        packed.mul(&x[100..100 + m * k], &mut y, true);
        products.extend(bits(&y));
        packed.mul(&x[200..200 + m * k], &mut y, false);
        products.extend(bits(&y));
    }
    vec![bits(&t), bits(&d), bits(&z), bits(&[fwd, loss]), products]
}

/// Parameters after a few training steps of each cell (2 layers, dropout, Adam; and the
/// vanilla cell with AdaGrad), on the current instruction set.
fn training() -> Vec<Vec<u32>> {
    let text = charrnn::synth::MarkovSource::builtin().generate(6_000, 5);
    let corpus = Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "t").unwrap();
    let mut out = Vec::new();
    for (cell, layers, adam) in [
        (CellKind::Rnn, 1, false),
        (CellKind::Gru, 2, true),
        (CellKind::Lstm, 2, true),
    ] {
        let mut c = common::session_config(4);
        c.model.cell = cell;
        c.model.layers = layers;
        if adam {
            c.optim.optimizer = Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                weight_decay: 0.01,
                eps: charrnn::optim::DEFAULT_EPS,
            };
            c.optim.lr = 2e-3;
        }
        let mut t = Trainer::<f32>::new(c, &corpus).unwrap();
        for _ in 0..4 {
            t.step(&corpus.ids).unwrap();
        }
        out.push(bits(&t.params));
    }
    out
}

#[test]
fn every_instruction_set_gives_the_portable_bits() {
    let isas = Isa::available();
    eprintln!("instruction sets this CPU runs: {isas:?}");
    set_isa(Isa::Portable).unwrap();
    let (k0, t0) = (kernels(), training());
    for &isa in &isas[1..] {
        set_isa(isa).unwrap();
        assert_eq!(linalg::isa(), isa);
        assert!(
            kernels() == k0,
            "{isa:?} kernels differ from the portable ones"
        );
        assert!(
            training() == t0,
            "{isa:?} training differs from the portable path"
        );
    }
    if isas.len() == 1 {
        eprintln!("only the portable path runs here: nothing to compare it with");
    }
    // An instruction set the CPU lacks is refused, not run.
    for isa in [Isa::Avx2, Isa::Avx512] {
        if !isas.contains(&isa) {
            assert!(set_isa(isa).is_err());
        }
    }
    // The environment's choice (CHARRNN_ISA, CHARRNN_BF16), as the binary applies it.
    let env = |key: &'static str, value: &'static str| {
        move |k: &str| (k == key).then(|| value.to_string())
    };
    linalg::kernels_from_env(env("CHARRNN_ISA", "Portable")).unwrap();
    assert_eq!(linalg::isa(), Isa::Portable);
    let widest = *isas.last().unwrap();
    linalg::kernels_from_env(env(
        "CHARRNN_ISA",
        ["portable", "avx2", "avx512"][isas.len() - 1],
    ))
    .unwrap();
    assert_eq!(linalg::isa(), widest);
    let err = linalg::kernels_from_env(env("CHARRNN_ISA", "sse9")).unwrap_err();
    assert!(
        err.contains("CHARRNN_ISA = sse9") && err.contains("portable, avx2 or avx512"),
        "{err}"
    );
    let err = linalg::kernels_from_env(env("CHARRNN_BF16", "tpu")).unwrap_err();
    assert!(
        err.contains("CHARRNN_BF16 = tpu") && err.contains("amx"),
        "{err}"
    );
    linalg::kernels_from_env(|_| None).unwrap();
    assert_eq!(linalg::isa(), widest);
}

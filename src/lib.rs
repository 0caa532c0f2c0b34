//! # charrnn
//!
//! A character-level recurrent neural network trainer: the classic from-scratch vanilla RNN
//! (after Karpathy's min-char-rnn), implemented faithfully and made fast with BLAS-batched
//! truncated backpropagation through time over many independent streams, and the gated cells
//! (GRU, LSTM, in PyTorch's formulation) stacked in layers.
//!
//! ## The model
//!
//! Row-vector convention, V symbols, H hidden units, one-hot input x_t (1, V):
//!
//! ```text
//! h_t = tanh(x_t·W_xh + h_{t−1}·W_hh + b_h)      W_xh (V, H), W_hh (H, H), b_h (H)
//! p_t = softmax(h_t·W_hy + b_y)                   W_hy (H, V), b_y (V)
//! L   = Σ_t −ln p_t[y_t]                          y_t = x_{t+1}, the next symbol
//! ```
//!
//! Gradients come from backpropagation through time over T steps, are clipped element-wise
//! to ±5, and AdaGrad updates the weights. The fast path ([`model`]) runs B streams at once,
//! the input product as a row gather, one (B, H)·(H, H) product per step on the recurrence
//! (with W_hh packed once per chunk, [`linalg::packed`]), and everything else as one big BLAS
//! gemm over all T·B rows; [`naive`] is the tutorial's
//! per-character loop, kept as the reference that tests hold the fast path equal to.
//!
//! With [`model::CellKind::Gru`] or [`model::CellKind::Lstm`] and L layers the model is
//! embed → L cells → head ([`model::CharLm`]); each cell is one file behind the
//! [`model::Cell`] trait. [`config`] holds the run's configuration as data, [`train`] one
//! optimizer step at a time, and [`session`] the whole training session (resume, evaluation,
//! model files, interrupts) that `charrnn train` runs.
//!
//! ## Example
//!
//! ```
//! use charrnn::config::{DataConfig, ModelConfig, RunConfig};
//! use charrnn::{data::{Corpus, SymbolKind}, train::{Stop, TrainConfig, Trainer}};
//!
//! let text = "the cat sat on the mat. ".repeat(40);
//! let corpus = Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "example")?;
//! let config = TrainConfig {
//!     model: ModelConfig { hidden: 16, ..Default::default() },
//!     data: DataConfig { seq_len: 8, batch: 4, ..Default::default() },
//!     run: RunConfig { stop: Stop::Steps(20), ..Default::default() },
//!     ..Default::default()
//! };
//! let mut trainer = Trainer::<f32>::new(config, &corpus)?;
//! while !trainer.done() {
//!     trainer.step(&corpus.ids)?;
//! }
//! assert!(trainer.progress.last_loss < (corpus.vocab.len() as f64).ln());
//! # Ok::<(), charrnn::Error>(())
//! ```

// Links the BLAS implementation (system OpenBLAS) that ndarray's gemm calls into.
extern crate blas_src;

pub mod atomic;
pub mod bench;
pub mod build_info;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod linalg;
pub mod model;
pub mod naive;
pub mod optim;
pub mod os;
pub mod parallel;
pub mod run;
pub mod sample;
pub mod session;
pub mod synth;
pub mod train;

pub use error::{Error, Result};

//! The health of a model's recurrence, for `charrnn inspect`: the spectral radius of every
//! gate block of every layer's W_hh, and the norm of every tensor.

use ndarray::s;
use serde::Serialize;

use super::CharLm;
use crate::linalg::{spectral_radius, Float};

/// What [`CharLm::health`] measures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    /// Per layer, the spectral radius of each H×H gate block of W_hh, in gate order.
    pub radii: Vec<Vec<f64>>,
    /// The Euclidean norm of every tensor, in layout order.
    pub norms: Vec<(String, f64)>,
}

impl CharLm {
    /// Spectral radii (eigenvalues by LAPACK) and norms of the parameters `p`; the error
    /// names the layer whose W_hh could not be analysed.
    pub fn health<F: Float>(&self, p: &[F]) -> Result<Health, String> {
        let h = self.hidden;
        let w = self.weights(p);
        let mut radii = Vec::with_capacity(self.layers);
        for (l, layer) in w.layers.iter().enumerate() {
            let blocks = (0..self.cell.gates())
                .map(|k| {
                    spectral_radius(&layer.w_hh.slice(s![.., k * h..(k + 1) * h]))
                        .map_err(|e| format!("cannot analyse layer {l}'s W_hh: {e}"))
                })
                .collect::<Result<Vec<f64>, String>>()?;
            radii.push(blocks);
        }
        let norms = self
            .layout()
            .into_iter()
            .map(|spec| {
                let sq: f64 = p[spec.range()]
                    .iter()
                    .map(|x| {
                        let x = x.to_f64().unwrap_or(f64::NAN);
                        x * x
                    })
                    .sum();
                (spec.name, sq.sqrt())
            })
            .collect();
        Ok(Health { radii, norms })
    }
}

//! What this binary is: recorded by `build.rs` at compile time, for reports and `--version`.

use serde::Serialize;

/// The build's identity, as recorded by `build.rs`.
#[derive(Clone, Debug, Serialize)]
pub struct BuildInfo {
    /// charrnn's version.
    pub version: &'static str,
    /// The BLAS library linked, its version and directory (from pkg-config).
    pub blas: &'static str,
    /// `rustc --version` of the compiler that built it.
    pub rustc: &'static str,
    /// Target triple.
    pub target: &'static str,
    /// Enabled target features (e.g. `avx2,fma,...`).
    pub target_features: &'static str,
    /// Cargo profile (`release`, `debug`).
    pub profile: &'static str,
}

/// The build info of this binary.
pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    blas: env!("CHARRNN_BUILD_BLAS"),
    rustc: env!("CHARRNN_BUILD_RUSTC"),
    target: env!("CHARRNN_BUILD_TARGET"),
    target_features: env!("CHARRNN_BUILD_FEATURES"),
    profile: env!("CHARRNN_BUILD_PROFILE"),
};

//! Locates the system OpenBLAS (fails early with install instructions when it is missing) and
//! records what this build is, for the reports: BLAS library, rustc, target, features, profile.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let blas = match pkg_config::Config::new().cargo_metadata(false).probe("openblas") {
        Ok(lib) => {
            let dirs: Vec<String> = lib.link_paths.iter().map(|p| p.display().to_string()).collect();
            format!("OpenBLAS {} ({})", lib.version, dirs.join(":"))
        }
        Err(e) => panic!(
            "\n\ncharrnn needs the system OpenBLAS library, and pkg-config cannot find it:\n  {e}\n\n\
             Install it, then build again:\n  \
             Debian/Ubuntu:  sudo apt-get install -y libopenblas-dev pkg-config\n  \
             Fedora:         sudo dnf install -y openblas-devel pkgconf-pkg-config\n  \
             macOS:          brew install openblas pkg-config && export PKG_CONFIG_PATH=$(brew --prefix openblas)/lib/pkgconfig\n\
             (or set PKG_CONFIG_PATH to the directory holding openblas.pc)\n\n"
        ),
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rustc-env=CHARRNN_BUILD_BLAS={blas}");
    println!("cargo:rustc-env=CHARRNN_BUILD_RUSTC={rustc_version}");
    println!("cargo:rustc-env=CHARRNN_BUILD_TARGET={target}");
    println!("cargo:rustc-env=CHARRNN_BUILD_FEATURES={features}");
    println!("cargo:rustc-env=CHARRNN_BUILD_PROFILE={profile}");
}

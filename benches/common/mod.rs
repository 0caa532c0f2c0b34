//! Shared setup of the benches: the corpus and BLAS pinned to one thread.

use charrnn::data::{Corpus, SymbolKind};

/// tinyshakespeare (V = 65) from `data/` (`scripts/get-tinyshakespeare.sh`) or
/// `../shared/data`, else the built-in source (V = 20), with a printed notice saying which.
pub fn corpus() -> Corpus {
    charrnn::linalg::set_blas_threads(1);
    let root = env!("CARGO_MANIFEST_DIR");
    let paths = [
        format!("{root}/data/tinyshakespeare.txt"),
        format!("{root}/../shared/data/tinyshakespeare.txt"),
    ];
    match paths.iter().find_map(|p| Some((p, std::fs::read(p).ok()?))) {
        Some((path, bytes)) => {
            eprintln!("bench corpus: {path}");
            Corpus::from_bytes(&bytes, SymbolKind::Chars, None, path).unwrap()
        }
        None => {
            eprintln!(
                "bench corpus: the built-in source (no {} or {}: scripts/get-tinyshakespeare.sh)",
                paths[0], paths[1]
            );
            let text = charrnn::synth::MarkovSource::builtin().generate(1_200_000, 1);
            Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "<built-in>").unwrap()
        }
    }
}

//! Shared setup of the benches: the corpus and BLAS pinned to one thread.

use charrnn::data::{Corpus, SymbolKind};

/// tinyshakespeare (V = 65) when ../shared/data has it, else the built-in source (V = 20),
/// with a printed notice saying which.
pub fn corpus() -> Corpus {
    charrnn::linalg::set_blas_threads(1);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/tinyshakespeare.txt"
    );
    match std::fs::read(path) {
        Ok(bytes) => {
            eprintln!("bench corpus: {path}");
            Corpus::from_bytes(&bytes, SymbolKind::Chars, None, path).unwrap()
        }
        Err(e) => {
            eprintln!("bench corpus: the built-in source ({path}: {e})");
            let text = charrnn::synth::MarkovSource::builtin().generate(1_200_000, 1);
            Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "<built-in>").unwrap()
        }
    }
}

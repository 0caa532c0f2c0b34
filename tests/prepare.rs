//! Prepared data: `charrnn prepare` → a data directory that decodes back to its inputs, in
//! sorted order, whatever the thread count; training from it is bit-identical to training from
//! the same text in memory, resumes exactly, and refuses data changed under it; every kind of
//! bad input or damaged directory is a clear error naming its path.

use std::path::{Path, PathBuf};

use charrnn::data::{tokens, Corpus, UNKNOWN};
use charrnn::error::Error;
use charrnn::session::{Session, Silent, Source, TrainData};
use charrnn::train::{Stop, TrainConfig};

mod common;
use common::bin::{fails_with, run, succeeds};

fn put(root: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Every id of a prepared directory, decoded back to bytes.
fn decode(dir: &Path) -> Vec<u8> {
    let c = tokens::open(dir).unwrap();
    let mut ids = vec![0u32; c.ids.len()];
    c.ids.read(0, &mut ids).unwrap();
    let mut out = Vec::new();
    for id in ids {
        c.vocab.decode_into(id as usize, &mut out);
    }
    out
}

#[test]
fn a_tree_decodes_to_its_matching_files_in_sorted_order() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    put(&src, "b.c", "int b; /* é */\n".as_bytes());
    put(&src, "a.c", "int a; // 😀\n".as_bytes());
    put(&src, "sub/z.h", "#define Z €\n".as_bytes());
    put(&src, "sub/notes.txt", b"not code\n");
    put(&src, "x.o", b"\x7fELF");
    put(&src, "empty/.keep", b"");
    let out = d.path().join("data");
    let args = [
        "prepare",
        &s(&src),
        "--out",
        &s(&out),
        "--include",
        "*.c,*.h",
        "--separator",
        "\\n--\\n",
        "--quiet",
    ];
    let stdout = succeeds(&args);
    assert!(stdout.contains("prepared 3 file(s)"), "{stdout}");
    let want = "int a; // 😀\n\n--\nint b; /* é */\n\n--\n#define Z €\n";
    assert_eq!(String::from_utf8(decode(&out)).unwrap(), want);
    let manifest: tokens::Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let names: Vec<&str> = manifest.sources.iter().map(|e| e.path.as_str()).collect();
    let want_names = [src.join("a.c"), src.join("b.c"), src.join("sub/z.h")];
    assert_eq!(
        names,
        want_names
            .iter()
            .map(|p| p.to_str().unwrap())
            .collect::<Vec<_>>()
    );
    assert_eq!(manifest.tokens, want.chars().count() as u64);

    // Excluding, and a glob with a path; a temporary file that a killed prepare left in the
    // output directory is removed.
    let out2 = d.path().join("data2");
    put(&out2, ".tokens.bin.tmp.4194999", b"half written");
    succeeds(&[
        "prepare",
        &s(&src),
        "--out",
        &s(&out2),
        "--exclude",
        "*.o,sub/*.txt",
        "--quiet",
    ]);
    let got = String::from_utf8(decode(&out2)).unwrap();
    assert_eq!(got, "int a; // 😀\nint b; /* é */\n#define Z €\n");
    assert!(!out2.join(".tokens.bin.tmp.4194999").exists());
}

#[test]
fn the_output_does_not_depend_on_threads_and_blocks_never_split_a_character() {
    let d = tempfile::tempdir().unwrap();
    // 11-byte pattern: the 8 MiB block boundary falls inside the 4-byte character.
    let unit = "aé€😀 ";
    let text = unit.repeat(9 << 20 >> 3);
    let file = put(d.path(), "big.txt", text.as_bytes());
    let (one, two) = (d.path().join("one"), d.path().join("two"));
    succeeds(&[
        "prepare",
        &s(&file),
        "--out",
        &s(&one),
        "--threads",
        "1",
        "--quiet",
    ]);
    succeeds(&[
        "prepare",
        &s(&file),
        "--out",
        &s(&two),
        "--threads",
        "2",
        "--quiet",
    ]);
    let tokens = |dir: &Path| std::fs::read(dir.join("tokens.bin")).unwrap();
    assert_eq!(tokens(&one), tokens(&two));
    assert_eq!(decode(&one), text.as_bytes());
}

#[test]
fn standard_input_in_byte_mode_round_trips_any_bytes() {
    let d = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 256) as u8).collect();
    let out = d.path().join("data");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_charrnn"))
        .args(["prepare", "-", "--bytes", "--quiet", "--out", &s(&out)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(decode(&out), bytes);
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 3, "only the three files stay: {left:?}");
}

#[test]
fn a_capped_vocabulary_maps_rare_symbols_to_one_unknown_id() {
    let d = tempfile::tempdir().unwrap();
    let text = format!("{}{}ccd", "a".repeat(100), "b".repeat(50));
    let file = put(d.path(), "t.txt", text.as_bytes());
    for cap in [["--max-vocab", "3"], ["--min-count", "3"]] {
        let out = d.path().join(cap[0].trim_start_matches('-'));
        let stdout = succeeds(&["prepare", &s(&file), "--out", &s(&out), cap[0], cap[1]]);
        assert!(
            stdout
                .contains("3 symbols; 2 rare symbol(s), 3 occurrence(s), mapped to the unknown id"),
            "{stdout}"
        );
        let c = tokens::open(&out).unwrap();
        assert_eq!(c.vocab.symbols, ['a' as u32, 'b' as u32, UNKNOWN]);
        let want = format!(
            "{}{}\u{fffd}\u{fffd}\u{fffd}",
            "a".repeat(100),
            "b".repeat(50)
        );
        assert_eq!(String::from_utf8(decode(&out)).unwrap(), want);
    }
}

/// The shared small session, holding out exactly the last 1,000 symbols.
fn config() -> TrainConfig {
    let mut c = common::session_config(20);
    c.data.val_chars = Some(1000);
    // A text file and a data directory split alike.
    c.data.val_layout = charrnn::data::ValLayout::End;
    c
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// 12,000 characters of the built-in chain written to DIR/t.txt and prepared into DIR/data:
/// the text and the two paths.
fn prepared_text(dir: &Path, seed: u64) -> (String, PathBuf, PathBuf) {
    let text = charrnn::synth::MarkovSource::builtin().generate(12_000, seed);
    let file = put(dir, "t.txt", text.as_bytes());
    let data_dir = dir.join("data");
    succeeds(&["prepare", &s(&file), "--out", &s(&data_dir), "--quiet"]);
    (text, file, data_dir)
}

/// Trains 10 steps of [`config`] on `data` in `run`, then resumes it for 10 more: the
/// parameters after the 20.
fn ten_then_ten(data: &Path, run: &Path) -> Vec<f32> {
    let mut first = config();
    first.run.stop = Stop::Steps(10);
    let loaded = TrainData::load(&Source::File(data.to_path_buf()), &first).unwrap();
    Session::start(first, loaded, run, false)
        .unwrap()
        .run(&mut Silent, &|| None)
        .unwrap();
    let mut resumed = Session::resume(
        run,
        Some(Source::File(data.to_path_buf())),
        Some(Stop::Steps(20)),
    )
    .unwrap();
    resumed.run(&mut Silent, &|| None).unwrap();
    resumed.trainer.params
}

/// Resuming `run` on `data` is refused: the data changed.
fn refused_as_changed(run: &Path, data: PathBuf) {
    match Session::resume(run, Some(Source::File(data)), Some(Stop::Steps(30))) {
        Err(Error::DataChanged { .. }) => {}
        other => panic!("expected DataChanged, got {:?}", other.err()),
    }
}

#[test]
fn training_from_prepared_data_is_bit_identical_to_training_from_the_text() {
    let d = tempfile::tempdir().unwrap();
    let (_, file, data_dir) = prepared_text(d.path(), 3);

    let from_text = TrainData::load(&Source::File(file), &config()).unwrap();
    let from_dir = TrainData::load(&Source::File(data_dir.clone()), &config()).unwrap();
    assert_eq!(from_dir.val.as_ref().unwrap().ids.len(), 1000);
    let mut a = Session::start(config(), from_text, &d.path().join("a"), false).unwrap();
    let mut b = Session::start(config(), from_dir, &d.path().join("b"), false).unwrap();
    let (ra, rb) = (
        a.run(&mut Silent, &|| None).unwrap(),
        b.run(&mut Silent, &|| None).unwrap(),
    );
    assert_eq!(bits(&a.trainer.params), bits(&b.trainer.params));
    assert_eq!(a.trainer.state(), b.trainer.state());
    assert_eq!(ra.last_val.unwrap().loss, rb.last_val.unwrap().loss);

    // Resuming on the prepared data: 10 then 10 more steps equal 20 straight.
    let c_dir = d.path().join("c");
    let c = ten_then_ten(&data_dir, &c_dir);
    assert_eq!(bits(&c), bits(&b.trainer.params));

    // The token file changed in place (same size, same vocabulary): refused.
    let tok = data_dir.join("tokens.bin");
    let mut bytes = std::fs::read(&tok).unwrap();
    let n = bytes.len();
    bytes.swap(n / 2, n / 2 + 1);
    bytes.swap(n / 3, n / 3 + 7);
    std::fs::write(&tok, &bytes).unwrap();
    refused_as_changed(&c_dir, data_dir);
}

/// Every id of `ids`.
fn ids_of(ids: &charrnn::data::Ids) -> Vec<u32> {
    let mut out = vec![0; ids.len()];
    ids.read(0, &mut out).unwrap();
    out
}

/// Blocks spread over a prepared corpus (the last of every 7 of its 14 blocks) are held out
/// by position and never trained on; the layout is recorded, the same blocks come back on
/// resume, and a run resumed from them trains the bits of one that never stopped, as it does
/// from the same text split alike. A corpus this small keeps its end by default.
#[test]
fn a_prepared_corpus_holds_out_blocks_spread_over_it() {
    use charrnn::data::{ValLayout, VAL_BLOCK};
    let d = tempfile::tempdir().unwrap();
    let text = charrnn::synth::MarkovSource::builtin().generate(60_000, 6);
    let file = put(d.path(), "t.txt", text.as_bytes());
    let data_dir = d.path().join("data");
    succeeds(&["prepare", &s(&file), "--out", &s(&data_dir), "--quiet"]);
    let (from_dir, from_text) = (Source::File(data_dir.clone()), Source::File(file));
    let mut c = common::session_config(20); // 20 steps of T·B = 128: 2,560 of 60,000
    c.data.val_chars = Some(2 * VAL_BLOCK);
    assert_eq!(
        data_of(&from_dir, &c).layout,
        ValLayout::End,
        "small: the end"
    );
    let blocks = ValLayout::Blocks { block: VAL_BLOCK };
    c.data.val_layout = blocks;

    let data = TrainData::load(&from_dir, &c).unwrap();
    assert_eq!(data.layout, blocks);
    // Positions: the text's blocks 6 and 13 (of 0..14), and all the rest for training.
    let whole = TrainData::load(&from_text, &{
        let mut none = c.clone();
        none.data.val_frac = 0.0;
        none.data.val_chars = None;
        none
    })
    .unwrap();
    let all = ids_of(&whole.train.ids);
    let at = |b: usize| all[b * VAL_BLOCK..(b + 1) * VAL_BLOCK].to_vec();
    assert_eq!(
        ids_of(&data.val.as_ref().unwrap().ids),
        [at(6), at(13)].concat()
    );
    let kept: Vec<u32> = (0..14)
        .filter(|b| b % 7 != 6)
        .flat_map(at)
        .chain(all[14 * VAL_BLOCK..].iter().copied())
        .collect();
    assert_eq!(ids_of(&data.train.ids), kept);

    // Recorded, and the same blocks on resume; 10 then 10 steps are 20 straight.
    let run = d.path().join("run");
    let mut first = c.clone();
    first.run.stop = Stop::Steps(10);
    let loaded = TrainData::load(&from_dir, &first).unwrap();
    Session::start(first, loaded, &run, false)
        .unwrap()
        .run(&mut Silent, &|| None)
        .unwrap();
    let saved = charrnn::checkpoint::load(&run.join("model.safetensors")).unwrap();
    assert_eq!(saved.config.data.val_layout, blocks);
    let mut resumed = Session::resume(&run, None, Some(Stop::Steps(20))).unwrap();
    assert_eq!(
        ids_of(&resumed.data.val.as_ref().unwrap().ids),
        ids_of(&data.val.unwrap().ids)
    );
    resumed.run(&mut Silent, &|| None).unwrap();
    let mut straight = Session::start(
        c.clone(),
        data_of(&from_dir, &c),
        &d.path().join("s"),
        false,
    )
    .unwrap();
    straight.run(&mut Silent, &|| None).unwrap();
    assert_eq!(
        bits(&resumed.trainer.params),
        bits(&straight.trainer.params)
    );
    // The same text, split alike, trains the same bits.
    let mut t = Session::start(
        c.clone(),
        data_of(&from_text, &c),
        &d.path().join("t"),
        false,
    )
    .unwrap();
    t.run(&mut Silent, &|| None).unwrap();
    assert_eq!(bits(&t.trainer.params), bits(&straight.trainer.params));
}

fn data_of(source: &Source, config: &TrainConfig) -> TrainData {
    TrainData::load(source, config).unwrap()
}

#[test]
fn eval_reads_prepared_data_and_skips_unknown_characters_when_asked() {
    let d = tempfile::tempdir().unwrap();
    let text = charrnn::synth::MarkovSource::builtin().generate(6_000, 4);
    let file = put(d.path(), "t.txt", text.as_bytes());
    let data_dir = d.path().join("data");
    succeeds(&["prepare", &s(&file), "--out", &s(&data_dir), "--quiet"]);
    let run_dir = d.path().join("run");
    succeeds(&[
        "train",
        &s(&data_dir),
        "--out",
        &s(&run_dir),
        "--hidden=8",
        "--steps=5",
        "--quiet",
    ]);
    let model = s(&run_dir.join("model.safetensors"));
    let loss = |out: &str| -> f64 {
        let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        v["loss"].as_f64().unwrap()
    };
    let on_text = succeeds(&["eval", &s(&file), "--model", &model, "--json"]);
    let on_dir = succeeds(&["eval", &s(&data_dir), "--model", &model, "--json"]);
    assert_eq!(loss(&on_text), loss(&on_dir));
    assert!(on_text.contains("64 stream(s)"), "{on_text}");

    let odd = put(d.path(), "odd.txt", format!("{text}ZZ§").as_bytes());
    fails_with(&["eval", &s(&odd), "--model", &model], &["'Z'", "'§'"]);
    let out = run(&[
        "eval",
        &s(&odd),
        "--model",
        &model,
        "--skip-unknown",
        "--json",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped 3 character(s)"));
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(v["skipped"], 3);
    assert_eq!(v["loss"].as_f64().unwrap(), loss(&on_text));
}

#[test]
fn bad_inputs_and_damaged_data_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let out = s(&root.join("data"));
    // Inputs.
    std::fs::create_dir_all(root.join("void")).unwrap();
    fails_with(
        &["prepare", &s(&root.join("void")), "--out", &out],
        &["void", "holds no files"],
    );
    put(root, "src/a.txt", b"hello");
    fails_with(
        &[
            "prepare",
            &s(&root.join("src")),
            "--out",
            &out,
            "--include",
            "*.c",
        ],
        &["holds no files matching --include *.c"],
    );
    fails_with(
        &["prepare", &s(&root.join("nope")), "--out", &out],
        &["cannot read", "nope"],
    );
    // A file in a tree that cannot be read (a dangling link: root reads any file) is named.
    std::fs::create_dir_all(root.join("tree")).unwrap();
    put(root, "tree/ok.txt", b"fine");
    std::os::unix::fs::symlink(root.join("gone.txt"), root.join("tree/link.txt")).unwrap();
    fails_with(
        &["prepare", &s(&root.join("tree")), "--out", &out],
        &["cannot follow the link", "link.txt"],
    );
    let mut bad = b"0123456789".repeat(1000);
    bad[7777] = 0xff;
    let bad_file = put(root, "src/bad.txt", &bad);
    fails_with(
        &["prepare", &s(&bad_file), "--out", &out],
        &["bad.txt", "not valid UTF-8 at byte offset 7777", "--bytes"],
    );
    // A stray continuation byte exactly where prepare cuts a file into its 2 MiB units.
    let mut stray = vec![b'a'; (2 << 20) + 100];
    stray[2 << 20] = 0x80;
    let stray_file = put(root, "src/stray.txt", &stray);
    fails_with(
        &["prepare", &s(&stray_file), "--out", &out],
        &["stray.txt", "not valid UTF-8 at byte offset 2097152"],
    );
    put(root, "src/empty.txt", b"");
    fails_with(
        &["prepare", &s(&root.join("src/empty.txt")), "--out", &out],
        &["no text"],
    );
    fails_with(
        &["prepare", &s(&bad_file), "--out", &out, "--max-vocab", "1"],
        &["--max-vocab"],
    );
    let outfile = put(root, "afile", b"x");
    fails_with(
        &["prepare", &s(&bad_file), "--bytes", "--out", &s(&outfile)],
        &["names a file"],
    );

    // A good directory, then damaged copies of it.
    let text = charrnn::synth::MarkovSource::builtin().generate(5_000, 5);
    let file = put(root, "t.txt", text.as_bytes());
    let good = root.join("good");
    succeeds(&["prepare", &s(&file), "--out", &s(&good), "--quiet"]);
    fails_with(
        &["prepare", &s(&file), "--out", &s(&good)],
        &["already holds prepared data", "--force"],
    );
    succeeds(&[
        "prepare",
        &s(&file),
        "--out",
        &s(&good),
        "--quiet",
        "--force",
    ]);
    let damaged = |name: &str, f: &dyn Fn(&Path)| -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["vocab.json", "tokens.bin", "manifest.json"] {
            std::fs::copy(good.join(file), dir.join(file)).unwrap();
        }
        f(&dir);
        dir
    };
    let edit = |dir: &Path, at: usize, v: &[u8]| {
        let p = dir.join("tokens.bin");
        let mut b = std::fs::read(&p).unwrap();
        b[at..at + v.len()].copy_from_slice(v);
        std::fs::write(p, b).unwrap();
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            damaged("truncated", &|d| {
                let p = d.join("tokens.bin");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(p, &b[..b.len() - 10]).unwrap();
            }),
            "truncated or overwritten",
        ),
        (
            damaged("headless", &|d| {
                std::fs::write(d.join("tokens.bin"), b"CHRN").unwrap()
            }),
            "shorter than its 64-byte header",
        ),
        (
            damaged("magic", &|d| edit(d, 0, b"NOTTOKEN")),
            "not a charrnn token file",
        ),
        (
            damaged("version", &|d| edit(d, 8, &7u32.to_le_bytes())),
            "format version 7",
        ),
        (
            damaged("width", &|d| edit(d, 12, &3u32.to_le_bytes())),
            "id width is 3",
        ),
        (
            damaged("count", &|d| edit(d, 16, &u64::MAX.to_le_bytes())),
            "more than 2^64",
        ),
        (
            damaged("vocab", &|d| {
                let p = d.join("vocab.json");
                let t = std::fs::read_to_string(&p)
                    .unwrap()
                    .replacen("32,", "33,", 1);
                std::fs::write(p, t).unwrap();
            }),
            "vocabulary hash does not match",
        ),
        (
            damaged("garbage", &|d| {
                std::fs::write(d.join("vocab.json"), b"{").unwrap()
            }),
            "not a vocabulary file",
        ),
        (
            damaged("missing", &|d| {
                std::fs::remove_file(d.join("tokens.bin")).unwrap()
            }),
            "cannot open",
        ),
    ];
    for (dir, needle) in &cases {
        fails_with(
            &[
                "train",
                &s(dir),
                "--steps=1",
                "--hidden=8",
                "--out",
                &s(&root.join("run")),
            ],
            &[needle, &s(dir)],
        );
    }
    // Not prepared data at all, and a corpus shorter than one step.
    fails_with(
        &["train", &s(&root.join("void")), "--steps=1"],
        &["no vocab.json and no tokens.bin", "charrnn prepare"],
    );
    let tiny = put(root, "tiny.txt", b"abcab");
    let tiny_dir = root.join("tiny");
    succeeds(&["prepare", &s(&tiny), "--out", &s(&tiny_dir), "--quiet"]);
    fails_with(
        &[
            "train",
            &s(&tiny_dir),
            "--steps=1",
            "--val-frac=0",
            "--out",
            &s(&root.join("run")),
        ],
        &["too short"],
    );
    // A token file refused at the library level carries its path.
    assert!(matches!(
        tokens::open(&cases[0].0),
        Err(Error::BadData { .. })
    ));
    assert!(Corpus::load(&good, charrnn::data::SymbolKind::Bytes, None).is_err());
}

#[test]
fn synth_writes_the_builtin_chain_at_any_size_and_keeps_existing_files() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("s.txt");
    succeeds(&[
        "synth",
        "--chars",
        "3000000",
        "--seed",
        "9",
        "--out",
        &s(&f),
    ]);
    let want = charrnn::synth::MarkovSource::builtin().generate(3_000_000, 9);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), want);
    fails_with(
        &["synth", "--chars", "10", "--out", &s(&f)],
        &["exists", "--force"],
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap().len(), 3_000_000);
}

/// The files of a prepared directory's manifest, relative to `root`.
fn sources(out: &Path, root: &Path) -> Vec<String> {
    let manifest: tokens::Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    manifest
        .sources
        .iter()
        .map(|e| {
            let p = Path::new(&e.path).strip_prefix(root).unwrap();
            p.to_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn globs_follow_the_shell_a_star_stays_within_a_directory() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    for f in [
        "drivers/a.c",
        "drivers/b.h",
        "drivers/net/x.c",
        "drivers/net/deep/y.c",
        "lib/z.c",
        "README",
    ] {
        put(&src, f, f.as_bytes());
    }
    let mut k = 0;
    let mut prepare = |globs: &[&str]| {
        k += 1;
        let out = d.path().join(format!("out{k}"));
        let mut args = vec!["prepare".to_string(), s(&src), "--out".into(), s(&out)];
        args.extend(globs.iter().map(|g| g.to_string()));
        args.push("--quiet".into());
        succeeds(&args);
        sources(&out, &src)
    };
    // A glob with a / is matched against the path below the directory; `*` does not cross a /.
    assert_eq!(prepare(&["--include", "drivers/*.c"]), ["drivers/a.c"]);
    // `**` does, zero or more directories deep; the walk stays sorted by name at every level.
    assert_eq!(
        prepare(&["--include", "drivers/**/*.c"]),
        ["drivers/a.c", "drivers/net/deep/y.c", "drivers/net/x.c"]
    );
    // A glob without a / is matched against the file name, at any depth.
    assert_eq!(
        prepare(&["--include", "*.c", "--exclude", "drivers/net/**"]),
        ["drivers/a.c", "lib/z.c"]
    );
    assert_eq!(
        prepare(&["--exclude", "drivers/*"]),
        [
            "README",
            "drivers/net/deep/y.c",
            "drivers/net/x.c",
            "lib/z.c"
        ]
    );
    // A glob that is not one is a clear error naming it, not a panic.
    let out = s(&d.path().join("bad"));
    fails_with(
        &[
            "prepare",
            &s(&src),
            "--out",
            &out,
            "--include",
            "drivers/[ab",
        ],
        &["--include", "drivers/[ab", "not a valid glob"],
    );
    // Commas separate globs, so an alternation with one is cut in two: the hint says so.
    fails_with(
        &["prepare", &s(&src), "--out", &out, "--exclude", "*.{c,h}"],
        &["--exclude", "*.{c", "commas separate globs"],
    );
}

/// The content hash of format-1 token files, as their writer computed it: FNV-1a over the id
/// bytes taken as little-endian u64 words, the last one zero-padded.
fn v1_content_hash(ids: &[u8]) -> u64 {
    ids.chunks(8).fold(0xcbf2_9ce4_8422_2325, |h, w| {
        let mut word = [0u8; 8];
        word[..w.len()].copy_from_slice(w);
        (h ^ u64::from_le_bytes(word)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn content_hash(ids: &[u8]) -> u64 {
    let mut h = tokens::ContentHash::default();
    h.update(ids);
    h.finish()
}

#[test]
fn two_top_bit_flips_change_the_content_hash() {
    let ids: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut flipped = ids.clone();
    // Bit 63 of the little-endian words 0 and 300.
    flipped[7] ^= 0x80;
    flipped[8 * 300 + 7] ^= 0x80;
    // In the format-1 hash a word's top bit only ever reaches the hash's top bit: they cancel.
    assert_eq!(v1_content_hash(&ids), v1_content_hash(&flipped));
    assert_ne!(content_hash(&ids), content_hash(&flipped));
}

#[test]
fn a_resume_refuses_a_token_file_changed_by_two_top_bit_flips_between_sampled_blocks() {
    let d = tempfile::tempdir().unwrap();
    // Every byte value (a vocabulary of 256, so a flipped top bit is still a valid id), and
    // more ids than the 64 blocks of 4,096 that a fingerprint samples.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..400_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let file = put(d.path(), "b.bin", &bytes);
    let data_dir = d.path().join("data");
    succeeds(&[
        "prepare",
        &s(&file),
        "--bytes",
        "--out",
        &s(&data_dir),
        "--quiet",
    ]);
    let run_dir = d.path().join("run");
    let mut cfg = config();
    cfg.run.stop = Stop::Steps(1);
    cfg.data.symbols = charrnn::data::SymbolKind::Bytes;
    let data = TrainData::load(&Source::File(data_dir.clone()), &cfg).unwrap();
    Session::start(cfg, data, &run_dir, false)
        .unwrap()
        .run(&mut Silent, &|| None)
        .unwrap();
    // The corpus changes in bytes 4,999 and 5,007 (ids of the same value: the top bits of two
    // words), between the first two sampled blocks of the 399,000 training ids, and is
    // prepared again: only the content hash can see the change.
    let mut changed = bytes.clone();
    changed[4999] ^= 0x80;
    changed[5007] ^= 0x80;
    let changed = put(d.path(), "c.bin", &changed);
    succeeds(&[
        "prepare",
        &s(&changed),
        "--bytes",
        "--out",
        &s(&data_dir),
        "--force",
        "--quiet",
    ]);
    refused_as_changed(&run_dir, data_dir);
}

#[test]
fn format_1_data_is_still_read_and_a_run_trained_on_it_resumes() {
    let d = tempfile::tempdir().unwrap();
    let (text, _, data_dir) = prepared_text(d.path(), 6);
    let tok = data_dir.join("tokens.bin");
    let mut b = std::fs::read(&tok).unwrap();
    assert_eq!(b[8..12], tokens::FORMAT_VERSION.to_le_bytes());
    assert_eq!(tokens::FORMAT_VERSION, 2);
    assert_eq!(b[32..40], content_hash(&b[64..]).to_le_bytes());
    // What a format-1 prepare wrote: the same ids and vocabulary, version 1 in all three
    // files, and the word-wise FNV-1a content hash.
    b[8..12].copy_from_slice(&1u32.to_le_bytes());
    let old_hash = v1_content_hash(&b[64..]);
    b[32..40].copy_from_slice(&old_hash.to_le_bytes());
    std::fs::write(&tok, &b).unwrap();
    for name in ["vocab.json", "manifest.json"] {
        let p = data_dir.join(name);
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        v["format"] = 1.into();
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    }
    let corpus = tokens::open(&data_dir).unwrap();
    assert_eq!(decode(&data_dir), text.as_bytes());
    let print = corpus.ids.fingerprint().unwrap();
    assert!(print.contains(&format!("{old_hash:016x}")), "{print}");

    // Trained on it, then resumed against it: 10 then 10 more steps equal 20 straight.
    let loaded = TrainData::load(&Source::File(data_dir.clone()), &config()).unwrap();
    let mut a = Session::start(config(), loaded, &d.path().join("a"), false).unwrap();
    a.run(&mut Silent, &|| None).unwrap();
    let b = ten_then_ten(&data_dir, &d.path().join("b"));
    assert_eq!(bits(&a.trainer.params), bits(&b));
}

#[test]
fn a_prepared_directory_knows_its_symbols_and_a_contrary_bytes_is_refused() {
    use charrnn::data::SymbolKind::{Bytes, Chars};
    let d = tempfile::tempdir().unwrap();
    let (_, file, chars_dir) = prepared_text(d.path(), 8);
    let bytes_dir = d.path().join("bytes");
    succeeds(&[
        "prepare",
        &s(&file),
        "--bytes",
        "--out",
        &s(&bytes_dir),
        "--quiet",
    ]);
    let (text, chars, bytes) = (
        Source::File(file.clone()),
        Source::File(chars_dir.clone()),
        Source::File(bytes_dir.clone()),
    );
    assert_eq!(text.symbols(None).unwrap(), Chars);
    assert_eq!(text.symbols(Some(Bytes)).unwrap(), Bytes);
    assert_eq!(Source::Builtin.symbols(None).unwrap(), Chars);
    assert_eq!(chars.symbols(None).unwrap(), Chars);
    assert_eq!(bytes.symbols(None).unwrap(), Bytes);
    assert_eq!(bytes.symbols(Some(Bytes)).unwrap(), Bytes);
    let err = chars.symbols(Some(Bytes)).unwrap_err().to_string();
    assert!(
        err.contains("--bytes") && err.contains("prepared in Chars mode"),
        "{err}"
    );
    // The binary: a byte directory trains without --bytes; --bytes on a character one is
    // refused with the same advice.
    let run_dir = d.path().join("run");
    let flags = [
        "--hidden",
        "8",
        "--steps",
        "2",
        "--quiet",
        "--force",
        "--out",
        &s(&run_dir),
    ];
    let mut args = vec!["train", &s(&bytes_dir)]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    args.extend(flags.iter().map(|f| f.to_string()));
    succeeds(&args);
    let model = charrnn::checkpoint::load(&run_dir.join("model.safetensors")).unwrap();
    assert_eq!(model.config.data.symbols, Bytes);
    let mut args = vec!["train".to_string(), s(&chars_dir), "--bytes".into()];
    args.extend(flags.iter().map(|f| f.to_string()));
    fails_with(&args, &["--bytes", "prepared in Chars mode"]);
}

#[test]
fn an_evaluation_text_is_read_with_the_models_vocabulary() {
    let d = tempfile::tempdir().unwrap();
    let (text, file, data_dir) = prepared_text(d.path(), 9);
    let vocab = tokens::open(&data_dir).unwrap().vocab;
    // The data directory prepared with the model's vocabulary, and the text itself.
    let (dir, skipped) = Corpus::for_evaluation(&data_dir, &vocab, false).unwrap();
    assert_eq!((dir.ids.len(), skipped.count), (text.chars().count(), 0));
    let (same, _) = Corpus::for_evaluation(&file, &vocab, false).unwrap();
    let all = |ids: &charrnn::data::Ids| {
        let mut out = vec![0; ids.len()];
        ids.read(0, &mut out).unwrap();
        out
    };
    assert_eq!(all(&same.ids), all(&dir.ids));
    // Symbols the model does not know: refused, or left out and reported.
    let odd = put(
        d.path(),
        "odd.txt",
        format!("{}ΩΩ§", &text[..500]).as_bytes(),
    );
    let err = Corpus::for_evaluation(&odd, &vocab, false).unwrap_err();
    assert!(matches!(err, Error::UnknownSymbols { .. }), "{err}");
    let (kept, skipped) = Corpus::for_evaluation(&odd, &vocab, true).unwrap();
    assert_eq!(kept.ids.len(), 500);
    assert_eq!(skipped.count, 3);
    assert_eq!(skipped.symbols, ["'Ω'", "'§'"]);
    // A directory prepared from other text has another vocabulary.
    let other_dir = d.path().join("other");
    let other = put(d.path(), "other.txt", b"only these letters");
    succeeds(&["prepare", &s(&other), "--out", &s(&other_dir), "--quiet"]);
    let err = Corpus::for_evaluation(&other_dir, &vocab, false).unwrap_err();
    assert!(matches!(err, Error::OtherVocabulary { .. }), "{err}");
    assert!(err.to_string().contains("prepare it again"), "{err}");
}

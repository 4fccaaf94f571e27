//! A crate that depends on `shmbus` and nothing else builds the Rust examples of the README and
//! of the crate docs, and `examples/two_processes.rs`. Doctests and examples see the library's
//! own dependencies, so only a separate crate shows a dependency that users would be missing
//! (such as `bytemuck` for the `Pod` derive). Each README block is a whole program that a user
//! pastes as it is shown: it is built alone and run (the one event-loop example also uses `nix`
//! for `poll(2)`, as its first line says).
//!
//! The crate is built offline (the library's dependencies are already fetched, since this test
//! was built) in a target directory kept under Cargo's `CARGO_TARGET_TMPDIR`, so only the first
//! run compiles the dependencies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Rust code blocks of `markdown` (fences tagged `rust` or untagged, as rustdoc reads
/// them), their hidden doctest lines (`# ...`) shown.
fn rust_blocks(markdown: &str) -> Vec<String> {
    raw_rust_blocks(markdown)
        .into_iter()
        .map(|block| {
            block
                .lines()
                .map(|line| match line.strip_prefix('#') {
                    Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest.trim_start(),
                    _ => line,
                })
                .fold(String::new(), |acc, l| acc + l + "\n")
        })
        .collect()
}

/// The Rust code blocks of `markdown` exactly as a reader sees and copies them.
fn raw_rust_blocks(markdown: &str) -> Vec<String> {
    enum State {
        Outside,
        Rust(String),
        Other,
    }
    let mut blocks = Vec::new();
    let mut state = State::Outside;
    for line in markdown.lines() {
        let line = line.trim_end();
        state = match (state, line.strip_prefix("```")) {
            (State::Outside, Some("" | "rust")) => State::Rust(String::new()),
            (State::Outside, Some(_)) => State::Other,
            (State::Outside, None) => State::Outside,
            (State::Rust(block), Some("")) => {
                blocks.push(block);
                State::Outside
            }
            (State::Other, Some("")) => State::Outside,
            (State::Other, _) => State::Other,
            (State::Rust(mut block), _) => {
                block.push_str(line);
                block.push('\n');
                State::Rust(block)
            }
        };
    }
    blocks
}

/// The crate documentation of a source file: its `//!` lines without the prefix.
fn crate_docs(source: &str) -> String {
    source
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A binary whose `main` runs each block in a function of its own (blocks end with
/// `Ok::<(), shmbus::Error>(())`).
fn docs_main(blocks: &[String]) -> String {
    let mut src = String::new();
    for (i, block) in blocks.iter().enumerate() {
        src.push_str(&format!(
            "#[allow(dead_code, unreachable_code)]\nfn block_{i}() -> Result<(), shmbus::Error> {{\n{block}}}\n\n"
        ));
    }
    src.push_str("fn main() {\n");
    for i in 0..blocks.len() {
        src.push_str(&format!("    block_{i}().expect(\"example {i}\");\n"));
    }
    src.push_str("}\n");
    src
}

/// Writes the user crate with one binary per `(name, source)`; returns its directory.
fn write_crate(bins: &[(&str, String)]) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("user-crate");
    let src = root.join("src/bin");
    std::fs::create_dir_all(&src).expect("create the user crate");
    let library = env!("CARGO_MANIFEST_DIR");
    let manifest = format!(
        "[package]\nname = \"user-crate\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\nshmbus = {{ path = {library:?} }}\n\
         nix = {{ version = \"0.29\", features = [\"poll\"] }}\n\n[workspace]\n"
    );
    std::fs::write(root.join("Cargo.toml"), manifest).expect("write Cargo.toml");
    // The workspace's lock file, so that the offline build resolves to the versions we test.
    let lock = Path::new(library).join("Cargo.lock");
    if lock.exists() {
        std::fs::copy(&lock, root.join("Cargo.lock")).expect("copy Cargo.lock");
    }
    for (name, code) in bins {
        std::fs::write(src.join(format!("{name}.rs")), code).expect("write a binary");
    }
    root
}

/// `cargo build --offline --bin NAME` in the user crate.
fn build(root: &Path, bin: &str) -> Output {
    let cargo = std::env::var("CARGO")
        .ok()
        .or(option_env!("CARGO").map(str::to_owned))
        .unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .args(["build", "--offline", "--quiet", "--bin", bin])
        .current_dir(root)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .output()
        .expect("run cargo")
}

#[test]
#[cfg_attr(miri, ignore)] // runs cargo
fn crate_depending_on_shmbus_alone_builds_the_documented_examples() {
    let readme = raw_rust_blocks(include_str!("../README.md"));
    assert!(readme.len() >= 3, "the README's Rust examples: {readme:#?}");
    for block in &readme {
        assert!(
            block.contains("fn main()"),
            "a README block is a whole program, as users paste it:\n{block}"
        );
        assert!(
            !block.lines().any(|l| l == "#" || l.starts_with("# ")),
            "a README block hides no doctest lines (`# ...`), which a pasted copy would keep:\n{block}"
        );
    }
    let blocks = rust_blocks(&crate_docs(include_str!("../src/lib.rs")));
    assert!(
        [&readme, &blocks]
            .iter()
            .all(|b| b.iter().any(|b| b.contains("#[bytemuck(crate"))),
        "the README and the crate docs each have a typed example"
    );
    let example = include_str!("../examples/two_processes.rs").to_owned();
    // The same typed message derived the way a user without the re-export would write it: this
    // one must fail, or this test could not tell a missing dependency from a present one.
    let direct = "#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]\n#[repr(C)]\n\
                  struct Tick { price: f64 }\nfn main() {}\n"
        .to_owned();
    let mut bins = vec![
        ("docs".to_owned(), docs_main(&blocks)),
        ("two_processes".to_owned(), example),
        ("direct".to_owned(), direct),
    ];
    bins.extend(
        readme
            .iter()
            .enumerate()
            .map(|(i, block)| (format!("readme_{i}"), block.clone())),
    );
    let bins: Vec<(&str, String)> = bins.iter().map(|(n, c)| (n.as_str(), c.clone())).collect();
    let root = write_crate(&bins);
    for (bin, _) in bins.iter().filter(|(n, _)| *n != "direct") {
        let out = build(&root, bin);
        assert!(
            out.status.success(),
            "{bin} does not build in a crate depending on shmbus alone ({}):\n{}",
            root.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Run as shown: each README program on its own, to completion.
    for (i, block) in readme.iter().enumerate() {
        let exe = root.join(format!("target/debug/readme_{i}"));
        let out = Command::new(&exe).output().expect("run a README program");
        assert!(
            out.status.success(),
            "README example {i} fails when run:\n{block}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = build(&root, "direct");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("bytemuck"),
        "a direct `bytemuck` derive built without a bytemuck dependency: {stderr}"
    );
}

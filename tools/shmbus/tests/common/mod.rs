//! Running the `shmbus` binary as a user would, shared by the inspector's test files (each uses
//! a part of it).
#![allow(dead_code)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// Runs `shmbus ARGS` in `dir`.
pub fn shmbus_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmbus"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run shmbus")
}

/// Runs `shmbus ARGS` in `/`, where no file is named like a test's segment (a `tail` or `info`
/// argument that names an existing file is a journal).
pub fn shmbus(args: &[&str]) -> Output {
    shmbus_in(Path::new("/"), args)
}

/// Runs `shmbus ARGS` with `input` on its stdin (then closed), in `/`.
pub fn with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmbus"))
        .args(args)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmbus");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait for shmbus")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// Runs a command that must succeed and returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let o = shmbus(args);
    assert!(o.status.success(), "shmbus {args:?} failed: {}", stderr(&o));
    stdout(&o)
}

/// `ok` of `CMD NAME` followed by `rest`, split at white space:
/// `ok_with("create", name, "--kind queue --slots 4")`.
pub fn ok_with(cmd: &str, name: &str, rest: &str) -> String {
    ok(&line(cmd, name, rest))
}

/// `CMD NAME` followed by `rest`, split at white space.
pub fn line<'a>(cmd: &'a str, name: &'a str, rest: &'a str) -> Vec<&'a str> {
    let mut args = vec![cmd, name];
    args.extend(rest.split_whitespace());
    args
}

/// Runs a command that must fail with status 1 and exactly one stderr line, the error line,
/// containing `want`.
pub fn fails_with(args: &[&str], want: &str) -> Output {
    let o = shmbus(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "shmbus {args:?}: status {:?}, stderr {err}",
        o.status
    );
    assert_eq!(
        err.lines().count(),
        1,
        "shmbus {args:?}: want one stderr line, got {err:?}"
    );
    assert!(
        err.starts_with("shmbus: error: "),
        "shmbus {args:?}: {err:?}"
    );
    assert!(
        err.contains(want),
        "shmbus {args:?}: {err:?} lacks {want:?}"
    );
    o
}

/// Asserts that `text` (what `what` printed) contains each of `wants`.
pub fn assert_contains_all<S: AsRef<str>>(
    what: &str,
    text: &str,
    wants: impl IntoIterator<Item = S>,
) {
    for want in wants {
        let want = want.as_ref();
        assert!(text.contains(want), "{what} lacks {want:?}:\n{text}");
    }
}

/// Each line of `s` parsed as JSON.
pub fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Segment `name`'s entry in `shmbus list --json`.
pub fn listed(name: &str) -> Value {
    let list: Value = serde_json::from_str(&ok(&["list", "--json"])).expect("list --json");
    list.as_array()
        .expect("an array")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {list}"))
        .clone()
}

/// A child process killed when the test ends, pass or fail.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The words a queue's sender or receiver stores when it takes a position (docs/design.md §11,
/// "Layout", "Claims"; the library's layout test asserts each offset): its claim word, then
/// the tail or head. A test that stores them and nothing more makes a live participant
/// (one whose entry this process holds) look stopped between taking and completing.
pub mod queue_words {
    use shmbus_testkit::forge::Forger;

    /// The tail (the common write cursor) and the head.
    const W_TAIL: usize = 128;
    const W_HEAD: usize = 144;
    /// A receiver's claim names its position + 1 with this bit (a sender's without).
    const CONSUMER: u64 = 1 << 62;

    /// Entry `i`'s claim word.
    pub fn claim(i: u32) -> usize {
        256 + i as usize * 8 + 3
    }

    /// Entry `i`, a sender, takes position `pos` (the tail is `pos`).
    pub fn claim_send(f: &Forger, i: u32, pos: u64) {
        f.store(claim(i), pos + 1);
        f.store(W_TAIL, pos + 1);
    }

    /// Entry `i`, a receiver, takes position `pos`'s item (the head is `pos`).
    pub fn claim_recv(f: &Forger, i: u32, pos: u64) {
        f.store(claim(i), (pos + 1) | CONSUMER);
        f.store(W_HEAD, pos + 1);
    }
}

/// The `shmbus` binary copied where any user may run it, for a test that runs it as another
/// user: that user cannot run the build's own copy when the checkout lies under a directory
/// closed to others (a clone in a `mktemp -d` directory, mode 0700). Removed on drop.
pub struct BinaryCopy {
    dir: std::path::PathBuf,
    pub path: std::path::PathBuf,
}

impl BinaryCopy {
    pub fn new() -> BinaryCopy {
        use std::os::unix::fs::PermissionsExt;
        let open = || std::fs::Permissions::from_mode(0o755);
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("shmbus-serve-test-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).expect("a directory for the binary's copy");
        std::fs::set_permissions(&dir, open()).expect("open the copy's directory");
        let path = dir.join("shmbus");
        std::fs::copy(env!("CARGO_BIN_EXE_shmbus"), &path).expect("copy the binary");
        std::fs::set_permissions(&path, open()).expect("let any user run the copy");
        BinaryCopy { dir, path }
    }
}

impl Drop for BinaryCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

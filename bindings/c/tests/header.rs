//! The checked-in `include/shmbus.h` is what cbindgen makes of this crate now. When it is not,
//! this test fails and says how to regenerate it; `SHMBUS_BLESS=1` writes it instead.

use std::path::Path;

#[test]
fn checked_in_header_matches_the_crate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .expect("bindings/c/cbindgen.toml is readable and valid");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses the crate")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("cbindgen writes UTF-8");
    let path = dir.join("include/shmbus.h");
    if std::env::var_os("SHMBUS_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("include/shmbus.h is writable");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "bindings/c/include/shmbus.h is stale: the C API changed and the header was not \
         regenerated. Regenerate it with\n    SHMBUS_BLESS=1 cargo test -p shmbus-ffi --test header\n\
         and commit the result."
    );
}

//! The checked-in header is what cbindgen makes of `src/lib.rs` today.
//! `TK_BLESS=1` rewrites it instead of failing.

use std::path::Path;

#[test]
fn header_is_fresh() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut out);
    let fresh = String::from_utf8(out).unwrap();
    let path = dir.join("include/transformer_kernels.h");
    if std::env::var_os("TK_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        old == fresh,
        "{} is stale: run `TK_BLESS=1 cargo test -p transformer-kernels-capi --test header`",
        path.display()
    );
}

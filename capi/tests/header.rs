//! include/mvdit.h is what cbindgen makes of src/lib.rs now (MVDIT_BLESS=1 rewrites it).

use std::path::Path;

#[test]
fn the_committed_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let mut made = Vec::new();
    cbindgen::Builder::new().with_src(dir.join("src/lib.rs")).with_config(config).generate().expect("cbindgen").write(&mut made);
    let made = String::from_utf8(made).unwrap();
    let path = dir.join("include/mvdit.h");
    if std::env::var_os("MVDIT_BLESS").is_some() {
        std::fs::write(&path, &made).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == made, "{} is stale: run MVDIT_BLESS=1 cargo test -p mvdit-capi --test header and commit it", path.display());
    for name in ["mvdit_text_to_image_open", "mvdit_text_to_image_generate", "mvdit_class_sampler_generate", "mvdit_train", "mvdit_last_error", "MvditStepCallback"] {
        assert!(made.contains(name), "{name} missing from the header");
    }
}

//! The code stays `cargo fmt` clean (`rustfmt.toml` holds the style): the workspace and the
//! fuzz crate beside it.

#[test]
fn the_code_is_formatted() {
    if let Err(unformatted) = xtask::check_formatting() {
        panic!("{unformatted}");
    }
}

fn main() {
    // Only the Node binding needs napi's link setup; the engine-only build
    // (`--no-default-features`, used by `cargo test`) links as a plain library.
    if std::env::var_os("CARGO_FEATURE_NAPI").is_some() {
        napi_build::setup();
    }
}

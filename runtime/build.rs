//! Tells the runtime whether it is being compiled without optimisation
//! (`OPT_LEVEL` 0, a plain `cargo run`/`cargo test` without a profile
//! override), so it can say once that networks will run very slowly.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(netdsl_unoptimized)");
    if std::env::var("OPT_LEVEL").as_deref() == Ok("0") {
        println!("cargo::rustc-cfg=netdsl_unoptimized");
    }
}

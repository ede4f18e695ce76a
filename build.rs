//! Records the git revision for run records, and with the `train` feature gives the `bitkit`
//! binary (and its tests) an rpath to libtorch, so it runs without LD_LIBRARY_PATH (tch links
//! libtorch dynamically; see .cargo/config.toml and scripts/setup).

fn main() {
    // The git revision for run records (`run.json`), when built from a checkout.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    if let Ok(out) = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output() {
        if out.status.success() {
            let rev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            println!("cargo:rustc-env=BITKIT_GIT_REV={rev}");
        }
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TRAIN").is_none() {
        return;
    }
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        return;
    };
    let lib = std::path::Path::new(&libtorch).join("lib");
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}

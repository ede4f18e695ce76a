//! Gives every binary and test of this crate an rpath to libtorch, so they run without
//! LD_LIBRARY_PATH (tch links libtorch dynamically; see .cargo/config.toml and scripts/setup).

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        return;
    };
    let lib = std::path::Path::new(&libtorch).join("lib");
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-env=BITKIT_LIBTORCH_LIB={}", lib.display());
}

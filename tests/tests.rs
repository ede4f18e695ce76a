//! End-to-end tests: the real `bitkit` binary on generated fixtures (one test binary, as
//! ripgrep's `tests/tests.rs`).

#![allow(clippy::print_stderr, clippy::print_stdout)]
mod util;

#[cfg(feature = "train")]
mod audit;
#[cfg(feature = "train")]
mod audit_hostile;
mod cli;
#[cfg(feature = "train")]
mod crash;
mod dedup;
mod disk_full;
mod ingest_formats;
mod ingest_hostile;
mod ingest_resume;
mod interop;
mod loader;
#[cfg(feature = "train")]
mod train;

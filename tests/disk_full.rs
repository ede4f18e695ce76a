//! `bitkit ingest` on a full disk: the output directory on a 2 MiB tmpfs, the input bigger than
//! that. The run must fail with exit 1 and an error naming the output path and the cause (no
//! space), and leave nothing that looks like a complete dataset (no `dataset.json`).
//!
//! Mounting needs root with CAP_SYS_ADMIN; where `mount` fails (an unprivileged container),
//! the test says so on stderr and passes without checking anything.

use crate::util::TestDir;
use bitkit_fixtures as fx;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Size of the small file system.
const TMPFS_BYTES: u64 = 2 << 20;

/// A tmpfs mounted at a directory, unmounted when dropped (also when the test fails).
struct Mount {
    dir: PathBuf,
}

impl Mount {
    /// Mounts a tmpfs of `bytes` at `dir` (created), or says why it could not.
    fn tmpfs(dir: &Path, bytes: u64) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Mount { dir: dir.to_owned() })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.dir).status().is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a child still writing?): detach it so the temporary directory can go.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

#[test]
fn ingest_onto_a_full_disk_fails_cleanly() {
    let t = TestDir::new();
    // Declared after `t`, so dropped (unmounted) before the temporary directory is removed.
    let mount = match Mount::tmpfs(&t.path("small"), TMPFS_BYTES) {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!("disk_full: skipped, cannot mount a tmpfs here: {why}");
            return;
        }
    };
    // JPEGs of 160-200 px sides at quality 100, stored untouched: the dataset is bigger than
    // the file system.
    let set = fx::synthetic_set_with(&fx::SyntheticSetConfig {
        num_classes: 4,
        per_class: 40,
        seed: 3,
        min_side: 160,
        max_side: 200,
        quality: 100,
    });
    let image_bytes: u64 = set.samples.iter().map(|sample| sample.bytes.len() as u64).sum();
    assert!(image_bytes > 2 * TMPFS_BYTES, "the input ({image_bytes} bytes) must not fit");
    fx::write_folder(&t.path("in"), &set).expect("folder");

    let out = mount.dir.join("ds");
    let run = t.bitkit(&["ingest", "--format", "folder", "in", "--out", crate::util::s(&out), "--quiet"]);
    let stderr = run.stderr();
    assert_eq!(run.code(), 1, "exit code (101 is a panic, -1 a signal); stderr:\n{stderr}");
    assert!(stderr.contains(&out.display().to_string()), "the error does not name the output: {stderr}");
    assert!(
        stderr.contains("No space left on device") || stderr.contains("os error 28"),
        "the error does not say the disk is full: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.join("dataset.json").exists(), "a failed ingest left a dataset.json");
    // Nothing complete-looking anywhere under the output.
    let names: Vec<String> = std::fs::read_dir(&out)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(!names.iter().any(|name| name.starts_with("part-")), "a committed part on a full disk: {names:?}");
    drop(mount);
}

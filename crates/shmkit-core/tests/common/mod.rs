//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository root, when the Node package is built there.
pub fn built_package() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .ok()?;
    let built = root.join("index.js").exists()
        && std::fs::read_dir(&root)
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".node"));
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (built && node).then_some(root)
}

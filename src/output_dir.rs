//! Output directories that appear whole or not at all.

use std::path::{Path, PathBuf};

/// A directory being written: files go to a hidden temporary sibling, which is renamed onto the
/// final path by [`OutputDir::commit`]. Dropping it without committing removes the temporary
/// directory, so a failed run never leaves a half-written output.
#[derive(Debug)]
pub struct OutputDir {
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl OutputDir {
    /// Starts writing `target`; its parent directory is created if needed.
    pub fn create(target: impl AsRef<Path>) -> std::io::Result<OutputDir> {
        let target = target.as_ref().to_path_buf();
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".to_string());
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)?;
        Ok(OutputDir {
            staging,
            target,
            committed: false,
        })
    }

    /// The path of a file inside the directory being written.
    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.staging.join(relative)
    }

    /// Moves the finished directory onto its final path, replacing what was there.
    pub fn commit(mut self) -> std::io::Result<PathBuf> {
        if self.target.exists() {
            std::fs::remove_dir_all(&self.target)?;
        }
        std::fs::rename(&self.staging, &self.target)?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

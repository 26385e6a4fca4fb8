//! The `files` capability: append-only files inside a directory the operator
//! granted. Paths are relative; anything that would leave the directory
//! (absolute paths, `..`, symlinks pointing out) is refused.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;

/// A granted directory.
pub struct Directory {
    name: String,
    root: PathBuf,
}

impl Directory {
    /// Open (creating it if needed) the directory of connection `name`.
    pub fn open(name: &str, path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create directory {}", path.display()))?;
        let root = path
            .canonicalize()
            .with_context(|| format!("cannot resolve directory {}", path.display()))?;
        Ok(Self {
            name: name.to_string(),
            root,
        })
    }

    /// The connection name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory, canonical.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `path` lives, if it stays inside the directory.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        let relative = Path::new(path);
        if path.is_empty() {
            return Err("empty path".to_string());
        }
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(format!(
                "path `{path}` leaves the granted directory `{}`: use a plain relative path",
                self.name
            ));
        }
        let full = self.root.join(relative);
        // A symlink inside the directory must not lead out of it.
        let mut existing = full.as_path();
        while !existing.exists() {
            match existing.parent() {
                Some(parent) => existing = parent,
                None => break,
            }
        }
        let real = existing
            .canonicalize()
            .map_err(|e| format!("cannot resolve `{path}`: {e}"))?;
        if !real.starts_with(&self.root) {
            return Err(format!(
                "path `{path}` leaves the granted directory `{}` through a symbolic link",
                self.name
            ));
        }
        Ok(full)
    }

    /// Append `data` to `path` and sync it to disk, so the batch's offsets
    /// are committed only after the bytes are durable.
    pub fn append(&self, path: &str, data: &[u8]) -> Result<(), String> {
        let full = self.resolve(path)?;
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create `{path}`: {e}"))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&full)
            .map_err(|e| format!("cannot open `{path}`: {e}"))?;
        file.write_all(data)
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("cannot append to `{path}`: {e}"))
    }

    /// Size of `path` in bytes, or `None` if it does not exist.
    pub fn size(&self, path: &str) -> Result<Option<u64>, String> {
        let full = self.resolve(path)?;
        match std::fs::metadata(&full) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read `{path}`: {e}")),
        }
    }

    /// Rename `from` to `to` atomically (both inside the directory).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), String> {
        let old = self.resolve(from)?;
        let new = self.resolve(to)?;
        std::fs::rename(&old, &new).map_err(|e| format!("cannot rename `{from}` to `{to}`: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sluice-files-{label}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn appends_sizes_and_renames_inside_the_directory() {
        let dir = temp_dir("ok");
        let granted = Directory::open("out", &dir).unwrap();
        assert_eq!(granted.size("a/events.ndjson").unwrap(), None);
        granted.append("a/events.ndjson", b"one\n").unwrap();
        granted.append("a/events.ndjson", b"two\n").unwrap();
        assert_eq!(granted.size("a/events.ndjson").unwrap(), Some(8));
        granted
            .rename("a/events.ndjson", "a/events.1.ndjson")
            .unwrap();
        assert_eq!(
            std::fs::read(dir.join("a/events.1.ndjson")).unwrap(),
            b"one\ntwo\n"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_paths_that_leave_the_directory() {
        let dir = temp_dir("escape");
        let granted = Directory::open("out", &dir.join("granted")).unwrap();
        for path in ["../x", "/etc/passwd", "a/../../x", "./x", ""] {
            let err = granted.append(path, b"x").unwrap_err();
            assert!(
                err.contains("leaves the granted directory") || err.contains("empty path"),
                "{path}: {err}"
            );
        }
        std::os::unix::fs::symlink(&dir, dir.join("granted/link")).unwrap();
        let err = granted.append("link/x", b"x").unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!dir.join("x").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

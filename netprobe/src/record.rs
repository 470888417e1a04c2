//! What netprobe keeps on disk so that one process finds what another set
//! up (a lab, a fast path): records kept as JSON files under `/run/netprobe`
//! ([`LAB_STATE_DIR`], [`FASTPATH_STATE_DIR`]), written whole and then
//! renamed, so a reader never sees half of one, and read if present; and pins
//! under [`PIN_DIR`].

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Serialize, de::DeserializeOwned};
use thiserror::Error;

/// Where netprobe pins what must outlive the command that attached it.
pub const PIN_DIR: &str = "/sys/fs/bpf/netprobe";

/// Each lab's record (`PREFIX.json`) and its nginx files (`PREFIX/`), and the
/// bench's lock.
pub const LAB_STATE_DIR: &str = "/run/netprobe/lab";

/// Each fast path's record (`NETNS_INODE-IFACE/`).
pub const FASTPATH_STATE_DIR: &str = "/run/netprobe/fastpath";

/// Each message ends in its cause, for the callers that print only the
/// error itself; the cause is not also its `source()`, which printing the
/// chain (`{:#}`) would show a second time.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("{} is not a valid netprobe record: {cause}", path.display())]
    Format {
        path: PathBuf,
        cause: serde_json::Error,
    },
}

/// Wraps an I/O error on `path` with what was being done.
pub fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RecordError {
    let path = path.to_owned();
    move |cause| RecordError::Io {
        action,
        path,
        cause,
    }
}

/// Writes `value` to `path` as JSON, a text file: it ends in a newline.
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), RecordError> {
    let mut json = serde_json::to_vec_pretty(value).map_err(|cause| RecordError::Format {
        path: path.to_owned(),
        cause,
    })?;
    json.push(b'\n');
    write_whole(path, &json)
}

/// Writes `contents` to `path` by a rename, so that a reader that finds the
/// file finds all of it.
pub fn write_whole(path: &Path, contents: &[u8]) -> Result<(), RecordError> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    fs::write(&partial, contents).map_err(io_error("write", &partial))?;
    fs::rename(&partial, path).map_err(io_error("write", path))
}

/// What a directory of records holds; nothing before the first is kept.
pub fn paths_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|entry| Ok(entry?.path())).collect(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

/// The record at `path`, if there is one.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, RecordError> {
    let json = match fs::read(path) {
        Ok(json) => json,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("read", path)(error)),
    };
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(|cause| RecordError::Format {
            path: path.to_owned(),
            cause,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `main` prints an error: the message and its causes, on one line.
    fn printed(error: RecordError) -> String {
        format!("{:#}", anyhow::Error::new(error))
    }

    #[test]
    fn a_malformed_record_names_its_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.json");
        fs::write(&path, r#"{"prefix": "#).unwrap();
        let error = load::<serde_json::Value>(&path).unwrap_err();
        assert_eq!(
            printed(error),
            format!(
                "{} is not a valid netprobe record: EOF while parsing a value at line 1 column 11",
                path.display()
            )
        );
    }

    #[test]
    fn an_unreadable_record_names_its_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let error = load::<serde_json::Value>(dir.path()).unwrap_err();
        assert_eq!(
            printed(error),
            format!(
                "cannot read {}: Is a directory (os error 21)",
                dir.path().display()
            )
        );
    }
}

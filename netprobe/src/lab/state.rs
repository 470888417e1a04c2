//! Where a lab is recorded, so that `status`, `exec` and `down` work from
//! any process: `STATE_DIR/PREFIX.json` describes it and `STATE_DIR/PREFIX/`
//! holds nginx's files.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use thiserror::Error;

use super::layout::Lab;

pub const STATE_DIR: &str = "/run/netprobe/lab";

#[derive(Debug, Error)]
pub enum StateError {
    #[error("cannot {action} lab state {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("lab state {} is not valid: {source}", path.display())]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub fn state_file(prefix: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{prefix}.json"))
}

/// The lab's own directory: nginx's configuration, pid file and logs.
pub fn lab_dir(prefix: &str) -> PathBuf {
    Path::new(STATE_DIR).join(prefix)
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError {
    let path = path.to_owned();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

/// Creates the lab's (empty) directory.
pub(crate) fn create_dir(prefix: &str) -> Result<PathBuf, StateError> {
    let dir = lab_dir(prefix);
    fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
    Ok(dir)
}

/// Records `lab`; written whole, then renamed, so readers never see half.
pub(crate) fn save(lab: &Lab) -> Result<(), StateError> {
    let path = state_file(lab.prefix());
    let partial = path.with_extension("json.partial");
    let json = serde_json::to_vec_pretty(lab).expect("a lab serializes");
    fs::write(&partial, json).map_err(io_error("write", &partial))?;
    fs::rename(&partial, &path).map_err(io_error("write", &path))
}

/// The recorded lab, if there is one.
pub(crate) fn load(prefix: &str) -> Result<Option<Lab>, StateError> {
    let path = state_file(prefix);
    let json = match fs::read(&path) {
        Ok(json) => json,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error("read", &path)(err)),
    };
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(|source| StateError::Format { path, source })
}

/// Removes the record and the lab's directory, whichever exist.
pub(crate) fn remove(prefix: &str) -> Result<(), StateError> {
    let file = state_file(prefix);
    for partial in [file.with_extension("json.partial"), file] {
        match fs::remove_file(&partial) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("remove", &partial)(err));
            }
            _ => {}
        }
    }
    let dir = lab_dir(prefix);
    match fs::remove_dir_all(&dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(io_error("remove", &dir)(err)),
        _ => Ok(()),
    }
}

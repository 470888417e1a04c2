//! Where a lab is recorded, so that `status`, `exec` and `down` work from
//! any process: `LAB_STATE_DIR/PREFIX.json` describes it and
//! `LAB_STATE_DIR/PREFIX/` holds nginx's files.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use super::{layout::Lab, spec::validate_prefix};
use crate::record::{self, LAB_STATE_DIR, io_error};

pub use crate::record::RecordError as StateError;

pub fn state_file(prefix: &str) -> PathBuf {
    Path::new(LAB_STATE_DIR).join(format!("{prefix}.json"))
}

/// The lab's own directory: nginx's configuration, pid file and logs.
pub fn lab_dir(prefix: &str) -> PathBuf {
    Path::new(LAB_STATE_DIR).join(prefix)
}

/// The prefixes with a record or a directory here (the bench's lock files
/// are neither).
pub(crate) fn recorded_prefixes() -> io::Result<Vec<String>> {
    let mut prefixes = Vec::new();
    for path in record::paths_in(Path::new(LAB_STATE_DIR))? {
        let recorded = match path.extension() {
            Some(extension) => extension == "json",
            None => path.is_dir(),
        };
        if let Some(prefix) = path.file_stem().and_then(|stem| stem.to_str())
            && recorded
            && validate_prefix(prefix).is_ok()
        {
            prefixes.push(prefix.to_owned());
        }
    }
    Ok(prefixes)
}

/// Creates the lab's (empty) directory.
pub(crate) fn create_dir(prefix: &str) -> Result<PathBuf, StateError> {
    let dir = lab_dir(prefix);
    fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
    Ok(dir)
}

/// Records `lab`; written whole, then renamed, so readers never see half.
pub(crate) fn save(lab: &Lab) -> Result<(), StateError> {
    record::save(&state_file(lab.prefix()), lab)
}

/// The recorded lab, if there is one.
pub(crate) fn load(prefix: &str) -> Result<Option<Lab>, StateError> {
    record::load(&state_file(prefix))
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

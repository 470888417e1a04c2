//! One agent per interface: a file under `/run/netprobe/agent` named after
//! the interface's namespace and name, held with an exclusive `flock` for
//! as long as the agent runs. The kernel releases the lock when the process
//! exits, however it exits, so a killed agent never leaves a lock that
//! stops the next one; the file holds the holder's pid, to name it.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Seek as _, Write as _},
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::PathBuf,
};

use thiserror::Error;

/// Where agents hold their locks.
pub const INSTANCE_DIR: &str = "/run/netprobe/agent";

#[derive(Debug, Error)]
pub enum InstanceError {
    #[error("another netprobe agent{holder} already watches {interface}")]
    Taken { interface: String, holder: String },
    #[error("cannot lock {}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
}

/// The lock of one interface, released on drop.
#[derive(Debug)]
pub struct InstanceLock {
    /// Holds the lock: it goes with the descriptor.
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock of the interface `name` in the namespace with inode
    /// `netns` (`shown` names it in messages).
    pub fn take(netns: u32, name: &str, shown: &str) -> Result<Self, InstanceError> {
        let path = PathBuf::from(INSTANCE_DIR).join(format!("{netns}-{name}.lock"));
        let io_error = |cause| InstanceError::Io {
            path: path.clone(),
            cause,
        };
        fs::create_dir_all(INSTANCE_DIR).map_err(io_error)?;
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_error)?;
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let error = io::Error::last_os_error();
                if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(io_error(error));
                }
                let mut pid = String::new();
                file.read_to_string(&mut pid).map_err(io_error)?;
                let pid = pid.trim();
                return Err(InstanceError::Taken {
                    interface: shown.to_owned(),
                    holder: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
            // The holder before us may have removed the file between our
            // open and our lock: then this lock guards nothing, try again.
            let locked = file.metadata().map_err(io_error)?;
            match fs::metadata(&path) {
                Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => {}
                Ok(_) => continue,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error(error)),
            }
            file.set_len(0).map_err(io_error)?;
            file.rewind().map_err(io_error)?;
            write!(file, "{}", std::process::id()).map_err(io_error)?;
            return Ok(Self { _file: file, path });
        }
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other agent holds this file;
        // one that opened it meanwhile sees it gone and tries again. A
        // failure leaves only an unlocked file, which the next agent takes.
        if let Err(error) = fs::remove_file(&self.path) {
            log::warn!("removing {}: {error}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf_link::error_chain;

    #[test]
    fn a_second_lock_on_the_same_interface_is_refused_and_free_again_after_the_first() {
        // Runs as root in the suite; an inode no namespace has.
        let first = InstanceLock::take(1, "test-lock0", "test-lock0").expect("first lock");
        let error = InstanceLock::take(1, "test-lock0", "test-lock0").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "another netprobe agent (pid {}) already watches test-lock0",
                std::process::id()
            )
        );
        let other = InstanceLock::take(1, "test-lock1", "test-lock1").expect("another interface");
        drop(first);
        let again = InstanceLock::take(1, "test-lock0", "test-lock0").expect("free again");
        drop((again, other));
        assert!(
            !PathBuf::from(INSTANCE_DIR)
                .join("1-test-lock0.lock")
                .exists()
        );
    }

    #[test]
    fn an_io_error_is_named_once() {
        let error = InstanceError::Io {
            path: PathBuf::from("/run/netprobe/agent/1-eth0.lock"),
            cause: io::Error::from_raw_os_error(libc::EROFS),
        };
        assert_eq!(
            error_chain(&error),
            "cannot lock /run/netprobe/agent/1-eth0.lock: Read-only file system (os error 30)"
        );
    }
}

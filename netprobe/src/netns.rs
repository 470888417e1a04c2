//! Network namespaces: the named ones of `ip netns` (`/run/netns/NAME`) and
//! running code inside one. `setns` switches only the calling thread, so work
//! runs on a thread of its own or under a guard that switches back.

use std::{
    fs::{self, File},
    io,
    os::{
        fd::{AsRawFd, RawFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
};

use thiserror::Error;

/// Where `ip netns add` bind-mounts named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

#[derive(Debug, Error)]
pub enum NetNsError {
    #[error("network namespace {0:?} does not exist")]
    NotFound(String),
    #[error("cannot open network namespace {path}: {cause}")]
    Open { path: PathBuf, cause: io::Error },
    #[error("cannot enter network namespace {name}: {cause}")]
    Enter { name: String, cause: io::Error },
    #[error("the thread running in network namespace {0} panicked")]
    ThreadPanicked(String),
    #[error("cannot create a network namespace: {0}")]
    Unshare(io::Error),
}

/// An open handle on a network namespace.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    inode: u32,
    name: String,
}

impl NetNs {
    /// A namespace created with `ip netns add NAME`.
    pub fn named(name: &str) -> Result<Self, NetNsError> {
        let path = Path::new(NETNS_RUN_DIR).join(name);
        if !path.exists() {
            return Err(NetNsError::NotFound(name.to_owned()));
        }
        Self::open(&path, name)
    }

    /// Another handle on the same namespace.
    pub fn try_clone(&self) -> Result<Self, NetNsError> {
        Ok(Self {
            file: self.file.try_clone().map_err(|cause| NetNsError::Open {
                path: PathBuf::from(&self.name),
                cause,
            })?,
            inode: self.inode,
            name: self.name.clone(),
        })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<Self, NetNsError> {
        Self::open(
            Path::new("/proc/thread-self/ns/net"),
            "the current network namespace",
        )
    }

    fn open(path: &Path, name: &str) -> Result<Self, NetNsError> {
        let open_error = |cause| NetNsError::Open {
            path: path.to_owned(),
            cause,
        };
        let file = File::open(path).map_err(open_error)?;
        let inode = file.metadata().map_err(open_error)?.ino();
        Ok(Self {
            file,
            // Namespace inode numbers are the kernel's 32-bit `ns.inum`.
            inode: inode as u32,
            name: name.to_owned(),
        })
    }

    /// The namespace's inode number: what the kernel calls `net->ns.inum`.
    pub fn inode(&self) -> u32 {
        self.inode
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `work` on a new thread inside this namespace.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, NetNsError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.switch_thread()?;
                    Ok(work())
                })
                .join()
                .map_err(|_| NetNsError::ThreadPanicked(self.name.clone()))?
        })
    }

    /// Runs `work` on a new thread inside a new, unnamed namespace that
    /// vanishes with the thread (and whatever `work` started there), so
    /// nothing is left behind even if the process is killed.
    pub fn run_in_new<T: Send>(work: impl FnOnce() -> T + Send) -> Result<T, NetNsError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                        return Err(NetNsError::Unshare(io::Error::last_os_error()));
                    }
                    Ok(work())
                })
                .join()
                .map_err(|_| NetNsError::ThreadPanicked("(new)".to_owned()))?
        })
    }

    /// Moves the calling thread into this namespace until the guard drops.
    pub fn enter(&self) -> Result<NetNsGuard, NetNsError> {
        let previous = Self::current()?;
        self.switch_thread()?;
        Ok(NetNsGuard { previous })
    }

    fn switch_thread(&self) -> Result<(), NetNsError> {
        if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(NetNsError::Enter {
                name: self.name.clone(),
                cause: io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Returns the thread to the namespace it was in when dropped.
#[must_use = "the thread leaves the namespace when the guard drops"]
pub struct NetNsGuard {
    previous: NetNs,
}

impl Drop for NetNsGuard {
    fn drop(&mut self) {
        if let Err(err) = self.previous.switch_thread() {
            // Continuing in the wrong namespace would act on the wrong devices.
            panic!("cannot return to the original network namespace: {err}");
        }
    }
}

/// Names of the namespaces in `/run/netns`.
pub fn named_namespaces() -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(NETNS_RUN_DIR) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Processes (other than this one) whose network namespace is one of
/// `namespaces`, judged by their main thread.
pub fn processes_in(namespaces: &[NetNs]) -> io::Result<Vec<libc::pid_t>> {
    let own = std::process::id();
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes exit while we look, and zombies have no namespace left.
        let Ok(netns) = fs::metadata(entry.path().join("ns/net")) else {
            continue;
        };
        if pid != own
            && namespaces
                .iter()
                .any(|ns| u64::from(ns.inode) == netns.ino())
        {
            pids.push(pid as libc::pid_t);
        }
    }
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf_link::error_chain;

    #[test]
    fn a_namespace_that_cannot_be_opened_names_its_cause_once() {
        let error = NetNs::open(Path::new("/nonexistent-netprobe-netns"), "x").unwrap_err();
        assert_eq!(
            error_chain(&error),
            "cannot open network namespace /nonexistent-netprobe-netns: \
             No such file or directory (os error 2)"
        );
    }
}

//! The server: Debian's nginx configured as in the study (a worker per
//! core, each pinned; keep-alive connections never recycled; no access
//! log), serving two fixed-size files, with everything it writes under the
//! lab's directory.

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{
    cmd::{CommandError, run},
    cpus,
};

/// Response header bytes nginx 1.22 sends for these files (status line,
/// Server, Date, Content-Type, Content-Length, Last-Modified, Connection,
/// ETag, Accept-Ranges): 252 with a 3-digit length, 254 with a 4-digit one.
const HEADER_LEN_SMALL: usize = 252;
const HEADER_LEN_LARGE: usize = 254;
/// nginx's files in the lab directory.
const CONFIG_FILE: &str = "nginx.conf";
const PID_FILE: &str = "nginx.pid";

/// The study's two responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResponseSize {
    /// Named 350 (the study's figure): a 100-byte body and 252 bytes of
    /// headers, 352 bytes on the wire.
    Small,
    /// 4096 bytes on the wire, headers included.
    Large,
}

impl ResponseSize {
    pub const ALL: [ResponseSize; 2] = [ResponseSize::Small, ResponseSize::Large];

    /// The size the response is known by, in bytes: the study's figures,
    /// which `--sizes`, the URLs and results.json name it by (the small one
    /// is 352 bytes on the wire, see [`Self::response_len`]).
    pub fn nominal_len(self) -> usize {
        match self {
            ResponseSize::Small => 350,
            ResponseSize::Large => 4096,
        }
    }

    /// Where nginx serves it, named after its size.
    pub fn path(self) -> &'static str {
        match self {
            ResponseSize::Small => "/350",
            ResponseSize::Large => "/4096",
        }
    }

    pub fn body_len(self) -> usize {
        match self {
            ResponseSize::Small => 100,
            ResponseSize::Large => 4096 - HEADER_LEN_LARGE,
        }
    }

    /// Header plus body, as nginx sends it.
    pub fn response_len(self) -> usize {
        self.body_len()
            + match self {
                ResponseSize::Small => HEADER_LEN_SMALL,
                ResponseSize::Large => HEADER_LEN_LARGE,
            }
    }
}

/// A response size as output shows it: the bytes on the wire of the response
/// named by this nominal length (`352 B` for 350), or the length itself if no
/// response has that name.
#[derive(Clone, Copy, Debug)]
pub struct WireSize(pub usize);

impl fmt::Display for WireSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = ResponseSize::ALL
            .into_iter()
            .find(|size| size.nominal_len() == self.0)
            .map_or(self.0, ResponseSize::response_len);
        f.pad(&format!("{bytes} B"))
    }
}

#[derive(Debug, Error)]
pub enum NginxError {
    #[error("nginx not found ({}): install it with `apt-get install nginx`", .0.display())]
    Missing(PathBuf),
    #[error("cannot write nginx's files in {}: {cause}", dir.display())]
    Write { dir: PathBuf, cause: io::Error },
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Fails with install instructions unless `nginx` runs.
pub(crate) fn check_installed(nginx: &Path) -> Result<(), NginxError> {
    match run(None, [nginx.as_os_str(), "-v".as_ref()]) {
        Ok(_) => Ok(()),
        Err(err) if err.is_not_found() => Err(NginxError::Missing(nginx.to_owned())),
        Err(err) => Err(err.into()),
    }
}

/// Writes the configuration and files into `dir` and starts nginx as a
/// daemon in `netns`. Returns once the master has its listening socket:
/// nginx binds before it daemonizes.
///
/// nginx inherits this process's open-files limit, so this raises the soft
/// limit to the hard one (as `ulimit -n $(ulimit -Hn)` would) to give the
/// workers room for their connections; raising the hard one would need
/// CAP_SYS_RESOURCE, which root may not have.
pub(crate) fn start(
    nginx: &Path,
    netns: &str,
    dir: &Path,
    port: u16,
    cpus: &[usize],
) -> Result<(), NginxError> {
    raise_open_files_limit();
    let write_error = |cause| NginxError::Write {
        dir: dir.to_owned(),
        cause,
    };
    let html = dir.join("html");
    fs::create_dir_all(&html).map_err(write_error)?;
    for size in ResponseSize::ALL {
        fs::write(html.join(&size.path()[1..]), vec![b'x'; size.body_len()])
            .map_err(write_error)?;
    }
    let conf = dir.join(CONFIG_FILE);
    fs::write(&conf, config(dir, port, cpus)).map_err(write_error)?;
    let (dir, conf, error_log) = (dir.as_os_str(), conf.as_os_str(), dir.join("error.log"));
    // `-e`: the log for startup, before the configuration is read.
    run(
        Some(netns),
        [
            nginx.as_os_str(),
            "-p".as_ref(),
            dir,
            "-c".as_ref(),
            conf,
            "-e".as_ref(),
            error_log.as_os_str(),
        ],
    )?;
    Ok(())
}

fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    // Not fatal: nginx runs with the lower limit too, and logs a warning.
    if !raised {
        log::warn!(
            "cannot raise the open-files limit for nginx: {}",
            io::Error::last_os_error()
        );
    }
}

/// The pid of the nginx master started with `dir`, if it is still running.
/// Checked against its command line, so a reused pid is never taken for it.
pub(crate) fn master_pid(dir: &Path) -> Option<libc::pid_t> {
    let pid: libc::pid_t = fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let conf = dir.join(CONFIG_FILE);
    let conf = conf.as_os_str().as_encoded_bytes();
    cmdline
        .windows(conf.len())
        .any(|w| w == conf)
        .then_some(pid)
}

fn config(dir: &Path, port: u16, cpus: &[usize]) -> String {
    let dir = dir.display();
    let (workers, mask) = (cpus.len(), cpus::nginx_mask(cpus));
    format!(
        "# Written by `netprobe lab up`: the study's server.
daemon on;
user root;
# One worker per core of the server's side, each pinned to its own.
worker_processes {workers};
worker_cpu_affinity auto {mask};
pid {dir}/{PID_FILE};
error_log {dir}/error.log warn;

events {{
    worker_connections 16384;
}}

http {{
    access_log off;
    default_type application/octet-stream;
    # Headers and body in one writev: with sendfile they leave as two
    # packets, each crossing the datapath, the second behind the first (and
    # tcp_nopush, which would join them, holds the last partial segment
    # until the client's delayed ACK, 11 ms at the bench's low rates).
    sendfile off;
    tcp_nodelay on;
    # Keep-alive connections are never recycled during a run.
    keepalive_requests 1000000000;
    keepalive_timeout 3600s;
    client_body_temp_path {dir}/client_body_temp;
    proxy_temp_path {dir}/proxy_temp;
    fastcgi_temp_path {dir}/fastcgi_temp;
    uwsgi_temp_path {dir}/uwsgi_temp;
    scgi_temp_path {dir}/scgi_temp;

    server {{
        listen {port} backlog=4096;
        root {dir}/html;
    }}
}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_352_and_4096_bytes_on_the_wire() {
        assert_eq!(ResponseSize::Small.response_len(), 352);
        assert_eq!(ResponseSize::Large.response_len(), 4096);
        for size in ResponseSize::ALL {
            assert_eq!(size.path(), format!("/{}", size.nominal_len()));
        }
        assert_eq!(WireSize(350).to_string(), "352 B");
        assert_eq!(format!("{:>7}", WireSize(4096)), " 4096 B");
        assert_eq!(WireSize(1000).to_string(), "1000 B");
    }

    #[test]
    fn missing_nginx_says_how_to_install_it() {
        let err = check_installed(Path::new("/nonexistent/nginx")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "nginx not found (/nonexistent/nginx): install it with `apt-get install nginx`"
        );
    }
}

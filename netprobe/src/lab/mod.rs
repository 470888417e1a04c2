//! The lab: the study's two machines (load generator on one, nginx on the
//! other) rebuilt in network namespaces on one host, for each container
//! networking mode. Everything a lab creates carries its prefix, so labs
//! with different prefixes live side by side and `down` touches only its
//! own.
//!
//! ```no_run
//! use netprobe::lab::{Lab, LabSpec, Mode, ResponseSize};
//!
//! let lab = Lab::up(&LabSpec::new("nplab", Mode::FlannelVxlan))?.into_guard();
//! let response = lab.fetch(ResponseSize::Small)?;
//! assert_eq!(response.status, 200);
//! // The lab is taken down when `lab` drops.
//! # Ok::<(), netprobe::lab::LabError>(())
//! ```

pub mod cli;
mod cmd;
mod cpus;
mod datapath;
mod http;
mod layout;
mod mode;
mod nginx;
mod spec;
mod state;
mod teardown;
mod topology;
mod wrk;

use std::{
    io,
    net::Ipv4Addr,
    ops::Deref,
    thread::sleep,
    time::{Duration, Instant},
};

use thiserror::Error;

pub use self::{
    cmd::CommandError,
    cpus::{CpuSplit, pin_current_thread},
    http::HttpResponse,
    layout::{Cidr, Lab, Node, Pod},
    mode::{MAX_NODES, Mode, UnknownMode},
    nginx::{NginxError, ResponseSize, WireSize},
    spec::{LabSpec, MAX_PODS_PER_NODE, SpecError, unique_prefix},
    state::{StateError, lab_dir, state_file},
    teardown::TeardownError,
    wrk::{WRK_CONNECTIONS, WRK_THREADS, WrkError},
};
use crate::{
    fastpath::{self, EnableOptions, FastpathError, FastpathId},
    netns::{NetNs, NetNsError},
};

/// How long `up` waits for nginx to answer through the lab.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const READY_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Bounds the connect and each read of one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum LabError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("ipvlan unavailable on this kernel (CONFIG_IPVLAN)")]
    IpvlanUnavailable,
    #[error(transparent)]
    Nginx(#[from] NginxError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Fastpath(#[from] FastpathError),
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Teardown(#[from] TeardownError),
    #[error("no server answering at {url} within {READY_TIMEOUT:?}: {last}")]
    NotReady { url: String, last: String },
    #[error("the fast path on {fastpath} does not serve {pod} within {READY_TIMEOUT:?}")]
    NotServed { fastpath: String, pod: Ipv4Addr },
    #[error("fetching {url}: {cause}")]
    Fetch { url: String, cause: io::Error },
    #[error("no lab with prefix {0} (start one with `netprobe lab up`)")]
    NoLab(String),
    #[error("listing the labs: {0}")]
    List(io::Error),
    #[error("{error} (and rolling back failed: {cleanup})")]
    RollbackFailed {
        error: Box<LabError>,
        cleanup: TeardownError,
    },
}

impl Lab {
    /// Builds the lab `spec` asks for and starts nginx in it, after taking
    /// down any lab with the same prefix. Returns once nginx answers
    /// through the lab; on failure removes whatever it created.
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        spec.validate()?;
        nginx::check_installed(&spec.nginx)?;
        if spec.mode == Mode::Ipvlan && !datapath::ipvlan_available()? {
            return Err(LabError::IpvlanUnavailable);
        }
        teardown::down(&spec.prefix)?;
        let lab = Lab::plan(spec);
        log::info!("building lab {} ({})", spec.prefix, spec.mode);
        match lab.build() {
            Ok(()) => Ok(lab),
            Err(error) => match teardown::down(&spec.prefix) {
                Ok(()) => Err(error),
                Err(cleanup) => Err(LabError::RollbackFailed {
                    error: Box::new(error),
                    cleanup,
                }),
            },
        }
    }

    /// Removes the lab with `prefix`: its processes, namespaces (with all
    /// their links) and record. Needs only the prefix, and succeeds when
    /// there is no such lab.
    pub fn down(prefix: &str) -> Result<(), LabError> {
        spec::validate_prefix(prefix)?;
        Ok(teardown::down(prefix)?)
    }

    /// Removes every lab on this machine, whatever its prefix; returns
    /// their prefixes.
    pub fn down_all() -> Result<Vec<String>, LabError> {
        let prefixes = teardown::all_prefixes().map_err(LabError::List)?;
        // On past a lab that resists, to remove all the others.
        let mut failure = None;
        for prefix in &prefixes {
            if let Err(error) = teardown::down(prefix) {
                failure.get_or_insert(error);
            }
        }
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(prefixes),
        }
    }

    /// The lab recorded under `prefix` by `up`, from any process.
    pub fn load(prefix: &str) -> Result<Lab, LabError> {
        spec::validate_prefix(prefix)?;
        state::load(prefix)?.ok_or_else(|| LabError::NoLab(prefix.to_owned()))
    }

    /// Takes the lab down when the guard drops, also when a test panics.
    pub fn into_guard(self) -> LabGuard {
        LabGuard {
            lab: self,
            armed: true,
        }
    }

    /// GETs one of the server's files from the client namespace.
    pub fn fetch(&self, size: ResponseSize) -> Result<HttpResponse, LabError> {
        self.fetch_within(size, FETCH_TIMEOUT)
    }

    /// [`Self::fetch`] with `timeout` bounding the connect and each read.
    pub fn fetch_within(
        &self,
        size: ResponseSize,
        timeout: Duration,
    ) -> Result<HttpResponse, LabError> {
        NetNs::named(&self.client_netns)?
            .run(|| http::get(self.server_addr, size.path(), timeout))?
            .map_err(|cause| LabError::Fetch {
                url: self.server_url(size),
                cause,
            })
    }

    /// The nginx master's pid, if it is running.
    pub fn server_pid(&self) -> Option<libc::pid_t> {
        nginx::master_pid(&lab_dir(self.prefix()))
    }

    fn build(&self) -> Result<(), LabError> {
        let dir = state::create_dir(self.prefix())?;
        topology::build(self)?;
        datapath::build(self)?;
        let fastpaths = if self.mode() == Mode::VxlanFastpath {
            self.nodes()
                .iter()
                .map(|node| {
                    // The default hook: on the lab's veth wire, TC.
                    fastpath::enable(&EnableOptions {
                        sync: Some(self.spec.netprobe.clone()),
                        ..EnableOptions::new("eth0", Some(node.netns.clone()))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        nginx::start(
            &self.spec.nginx,
            &self.server_netns,
            &dir,
            layout::SERVER_PORT,
            &CpuSplit::of_this_process().server,
        )?;
        self.wait_ready()?;
        self.wait_served(&fastpaths)?;
        state::save(self)?;
        Ok(())
    }

    /// Waits until each fast path serves the client or server pod on its
    /// node: the kernel's path taught the nodes their neighbours while
    /// `wait_ready` fetched, and a sync round follows within 250 ms.
    fn wait_served(&self, fastpaths: &[FastpathId]) -> Result<(), LabError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for (id, node) in fastpaths.iter().zip(self.nodes()) {
            let Some(pod) = node
                .pods
                .iter()
                .find(|pod| pod.netns == self.client_netns || pod.netns == self.server_netns)
            else {
                continue;
            };
            while !fastpath::state::load(id)
                .map_err(FastpathError::from)?
                .is_some_and(|state| state.pods.iter().any(|served| served.ip == pod.ip))
            {
                if Instant::now() >= deadline {
                    return Err(LabError::NotServed {
                        fastpath: id.to_string(),
                        pod: pod.ip,
                    });
                }
                sleep(READY_POLL_INTERVAL);
            }
        }
        Ok(())
    }

    /// Polls until nginx answers from the client's side, which also proves
    /// the datapath.
    fn wait_ready(&self) -> Result<(), LabError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let last = match self.fetch(ResponseSize::Small) {
                Ok(response) if response.status == 200 => return Ok(()),
                Ok(response) => format!("status {}", response.status),
                Err(LabError::Fetch { cause, .. }) => cause.to_string(),
                Err(err) => return Err(err),
            };
            if Instant::now() >= deadline {
                return Err(LabError::NotReady {
                    url: self.server_url(ResponseSize::Small),
                    last,
                });
            }
            sleep(READY_POLL_INTERVAL);
        }
    }
}

/// A lab that is taken down when this drops: a test that fails still
/// leaves nothing behind.
#[must_use = "the lab is taken down when the guard drops"]
pub struct LabGuard {
    lab: Lab,
    armed: bool,
}

impl LabGuard {
    /// `Lab::up` with a guard.
    pub fn up(spec: &LabSpec) -> Result<LabGuard, LabError> {
        Lab::up(spec).map(Lab::into_guard)
    }

    /// Takes the lab down now, reporting what could not be removed.
    pub fn down(mut self) -> Result<(), LabError> {
        self.armed = false;
        Lab::down(self.lab.prefix())
    }
}

impl Deref for LabGuard {
    type Target = Lab;

    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(err) = teardown::down(self.lab.prefix()) {
            // Drop cannot return it, and a leak must not pass unnoticed.
            eprintln!("netprobe lab: {err}");
        }
    }
}

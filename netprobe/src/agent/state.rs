//! The agent's running measurement: the probe session on the datapath last
//! discovered, and everything counted since the agent started. When the
//! datapath changes (a pod came or went), a session on the new one replaces
//! the old, whose counts are kept (see [`Totals`]).

use std::time::{Duration, Instant};

use crate::{
    path::{Datapath, Direction},
    probes::{ProbeError, ProbeSession},
    report::{Report, ReportContext},
};

use super::{
    counts::{Counts, Totals, direction_label},
    exposition::Exposition,
    history::History,
};

pub struct AgentState {
    interface: String,
    netns: Option<String>,
    session: ProbeSession,
    datapath: Datapath,
    history: History,
    totals: Totals,
    datapath_changes: u64,
    /// Why the last re-discovery failed, if it did.
    discovery_error: Option<String>,
}

impl AgentState {
    pub fn new(
        interface: &str,
        netns: Option<&str>,
        datapath: Datapath,
        session: ProbeSession,
        forget_after: Duration,
    ) -> Self {
        Self {
            interface: interface.to_owned(),
            netns: netns.map(str::to_owned),
            session,
            datapath,
            history: History::new(Instant::now()),
            totals: Totals::new(forget_after),
            datapath_changes: 0,
            discovery_error: None,
        }
    }

    pub fn datapath(&self) -> &Datapath {
        &self.datapath
    }

    /// Replaces the session with one on the newly discovered `datapath`,
    /// keeping what the old one counted.
    pub fn replace(&mut self, datapath: Datapath, session: ProbeSession) -> Result<(), ProbeError> {
        let last = Counts::of(self.session.path(), &self.session.snapshot()?);
        self.totals.end_session(&last);
        // The old session detaches as it drops.
        self.session = session;
        self.datapath = datapath;
        self.history = History::new(Instant::now());
        self.datapath_changes += 1;
        Ok(())
    }

    /// Records how the last re-discovery went.
    pub fn discovered(&mut self, result: Result<(), String>) {
        self.discovery_error = result.err();
    }

    /// `Err(reason)` when the agent cannot follow its datapath.
    pub fn health(&self) -> Result<(), &str> {
        match &self.discovery_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Takes a mark for `/report?since=` when one is due.
    pub fn mark(&mut self) -> Result<(), ProbeError> {
        let snapshot = self.session.snapshot()?;
        self.history.record(&snapshot, Instant::now());
        Ok(())
    }

    /// Everything `/metrics` shows, now.
    pub fn exposition(&mut self) -> Result<Exposition, ProbeError> {
        let current = Counts::of(self.session.path(), &self.session.snapshot()?);
        let open = self.session.open_flights()?;
        Ok(Exposition {
            counts: self.totals.with(&current, Instant::now()),
            open_flights: Direction::BOTH
                .into_iter()
                .map(|direction| (direction_label(direction), open[direction.code() as usize]))
                .collect(),
            costs: self.session.program_costs()?,
            datapath_changes: self.datapath_changes,
        })
    }

    /// The report `attach --json` would write, over the running session's
    /// last `since` (all of it when `None` or when it is younger).
    pub fn report(&self, since: Option<Duration>) -> Result<Report, ProbeError> {
        let (snapshot, window) =
            self.history
                .window(&self.session.snapshot()?, since, Instant::now());
        let context = ReportContext {
            interface: &self.interface,
            netns: self.netns.as_deref(),
            filter: None,
            xdp_mode: self.session.xdp_mode(),
            duration_s: window.as_secs_f64(),
            follow_one_in: self.session.follow_one_in(),
        };
        Ok(Report::new(
            &context,
            self.session.path(),
            &snapshot,
            self.session.stale_flights()?,
            self.session.unobserved(),
            self.session.program_costs()?,
            Vec::new(),
        ))
    }
}

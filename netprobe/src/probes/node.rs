//! The probes on one node of a lab: attached behind the node's `eth0` in
//! its namespace, sampling packets, and counting from a mark, so that the
//! same probes serve run after run.

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};

use super::{ProbeOptions, ProbeSession, ProgramCost, SampledFlight, Snapshot};
use crate::{discovery, netns::NetNs};

/// The probes on one node, with the ring of the packets they sample.
pub struct NodeProbes {
    netns: String,
    session: ProbeSession,
    traces: RingBuf<MapData>,
}

/// What a node's probes had counted at the start of a run.
pub struct Mark {
    snapshot: Snapshot,
    costs: Vec<ProgramCost>,
}

/// What a node's probes counted since a [`Mark`].
pub struct Counted {
    pub snapshot: Snapshot,
    pub costs: Vec<ProgramCost>,
}

impl NodeProbes {
    /// Attaches to the node's eth0 with `options`; its samples
    /// (`options.sample_every`) are taken from the ring from now on.
    pub fn attach(netns: &str, options: &ProbeOptions) -> Result<Self> {
        let node = NetNs::named(netns)?;
        let datapath = discovery::discover("eth0", &node)?;
        let mut session = ProbeSession::start(&datapath, &node, options)
            .with_context(|| format!("attaching probes in {netns}"))?;
        let traces = session.take_traces()?;
        Ok(Self {
            netns: netns.to_owned(),
            session,
            traces,
        })
    }

    /// The node's namespace.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The attached probes: their path, XDP mode and what they miss.
    pub fn session(&self) -> &ProbeSession {
        &self.session
    }

    /// Detaches the probes, loaded still, until [`Self::resume`].
    pub fn pause(&mut self) {
        self.session.pause();
    }

    /// Detaches the probes that see other namespaces' packets too.
    pub fn quiesce(&mut self) {
        self.session.quiesce();
    }

    pub fn resume(&mut self) -> Result<()> {
        Ok(self.session.resume()?)
    }

    /// Marks the start of a run; samples taken before it are dropped.
    pub fn mark(&mut self) -> Result<Mark> {
        ProbeSession::drain_traces(&mut self.traces);
        Ok(Mark {
            snapshot: self.session.snapshot()?,
            costs: self.session.program_costs()?,
        })
    }

    /// The packets sampled since the last call (or the mark).
    pub fn take_samples(&mut self) -> Vec<SampledFlight> {
        ProbeSession::drain_traces(&mut self.traces)
    }

    /// What the probes counted since `mark`.
    pub fn since(&self, mark: &Mark) -> Result<Counted> {
        let (snapshot, costs) = (self.session.snapshot()?, self.session.program_costs()?);
        Ok(Counted {
            snapshot: snapshot.since(&mark.snapshot),
            costs: costs_since(&mark.costs, &costs),
        })
    }
}

fn costs_since(before: &[ProgramCost], after: &[ProgramCost]) -> Vec<ProgramCost> {
    after
        .iter()
        .map(|now| now.since(before.iter().find(|then| then.program == now.program)))
        .collect()
}

//! How a connection waits for its next send time: a timer that wakes a task
//! at an instant of [`now_ns`].
//!
//! tokio's timers round to the millisecond. Since latency runs from the
//! scheduled send time, every bit of lateness in waking up to send would be
//! measured as latency; a timerfd fires within microseconds of its deadline.
//! On a VM those microseconds are many: each timer armed and fired is a
//! trip through the hypervisor, 15 us late at the median on the lab's VM,
//! and a vCPU in that trip runs nothing else: a response arriving then
//! waits for it too. Spinning until the deadline costs a CPU instead.

use std::{
    fmt, future, io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    ptr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Poll, Waker},
};

use serde::{Deserialize, Serialize};
use tokio::io::{Interest, unix::AsyncFd};

use crate::clock::now_ns;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// How a connection waits for its next send time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pacing {
    /// Sleep on a timerfd: the CPU idles between sends.
    #[default]
    Timer,
    /// Busy-poll the clock and the sockets: the median send lag (in the
    /// report) stays under a microsecond and responses are read as they
    /// arrive, for a CPU kept busy all the run.
    Spin,
}

/// As on the command line.
impl fmt::Display for Pacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = clap::ValueEnum::to_possible_value(self).expect("no pacing is hidden");
        f.write_str(value.get_name())
    }
}

/// Waits until an instant the way its [`Pacing`] says: on a one-shot
/// CLOCK_MONOTONIC timerfd registered with the current tokio runtime, or
/// until its thread's [`Spinner`] sees the deadline pass.
pub enum Timer {
    Fd(AsyncFd<OwnedFd>),
    Spin(Arc<Spinner>),
}

impl Timer {
    /// Waits on `spinner`, which must be spinning on the same runtime, or
    /// without one on a timerfd; must be called inside a tokio runtime,
    /// whose reactor then watches the timerfd.
    pub fn new(spinner: Option<&Arc<Spinner>>) -> io::Result<Self> {
        if let Some(spinner) = spinner {
            return Ok(Self::Spin(spinner.clone()));
        }
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: timerfd_create just returned this descriptor to us alone,
        // and the OwnedFd keeps it open for as long as the AsyncFd owns it.
        let fd = unsafe {
            AsyncFd::register_with_interest(OwnedFd::from_raw_fd(fd), Interest::READABLE)
        };
        Ok(Self::Fd(fd.map_err(|err| err.into_parts().1)?))
    }

    /// Returns at `deadline` (nanoseconds of [`now_ns`]), at once if it has
    /// passed.
    pub async fn sleep_until(&self, deadline: u64) -> io::Result<()> {
        if now_ns() >= deadline {
            return Ok(());
        }
        match self {
            Self::Fd(fd) => sleep_on(fd, deadline).await,
            Self::Spin(spinner) => {
                spinner.sleep_until(deadline).await;
                Ok(())
            }
        }
    }
}

/// One task that busy-polls the clock for all of a thread's spinning
/// timers: each turn of the runtime looks at the clock once, not once per
/// waiting connection, before it polls the sockets again, so requests go
/// out and responses are read within a turn of their time.
#[derive(Debug, Default)]
pub struct Spinner {
    /// Deadlines not yet reached and the tasks waiting for them; behind a
    /// mutex only so that a worker can move to its thread before it runs.
    waiting: Mutex<Vec<(u64, Waker)>>,
}

impl Spinner {
    /// Wakes each waiting task once its deadline has passed, yielding after
    /// every look at the clock so the runtime polls its sockets in between.
    /// Never returns: run it beside the tasks that wait.
    pub async fn spin(&self) {
        loop {
            let now = now_ns();
            self.waiting().retain(|(deadline, waker)| {
                let due = *deadline <= now;
                if due {
                    waker.wake_by_ref();
                }
                !due
            });
            tokio::task::yield_now().await;
        }
    }

    async fn sleep_until(&self, deadline: u64) {
        future::poll_fn(|context| {
            if now_ns() >= deadline {
                return Poll::Ready(());
            }
            self.waiting().push((deadline, context.waker().clone()));
            Poll::Pending
        })
        .await;
    }

    fn waiting(&self) -> MutexGuard<'_, Vec<(u64, Waker)>> {
        // Nothing can panic while the list is locked.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Arms the timerfd `fd` for `deadline` and waits for it to fire.
async fn sleep_on(fd: &AsyncFd<OwnedFd>, deadline: u64) -> io::Result<()> {
    let expiry = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (deadline / NANOS_PER_SEC) as libc::time_t,
            tv_nsec: (deadline % NANOS_PER_SEC) as libc::c_long,
        },
    };
    let raw_fd = fd.as_raw_fd();
    // Arming also discards an expiry left unread by a cancelled sleep.
    if unsafe { libc::timerfd_settime(raw_fd, libc::TFD_TIMER_ABSTIME, &expiry, ptr::null_mut()) }
        != 0
    {
        return Err(io::Error::last_os_error());
    }
    loop {
        let mut ready = fd.readable().await?;
        let mut expirations = 0u64;
        let read = ready.try_io(|_| {
            let len = size_of::<u64>();
            let n = unsafe { libc::read(raw_fd, (&raw mut expirations).cast(), len) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
        if let Ok(result) = read {
            // The one expiry is consumed: nothing is readable until the
            // next arming, so spare the next sleep a read that would block.
            ready.clear_ready();
            return result;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::task::{LocalSet, spawn_local};

    use super::*;

    /// A spinner spinning on the current thread's `LocalSet`.
    fn spinning() -> Arc<Spinner> {
        let spinner = Arc::new(Spinner::default());
        let spinning = spinner.clone();
        spawn_local(async move { spinning.spin().await });
        spinner
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sleeps_until_the_deadline_and_not_for_past_ones() {
        LocalSet::new()
            .run_until(async {
                let spinner = spinning();
                for pacing in [Pacing::Timer, Pacing::Spin] {
                    let timer = Timer::new((pacing == Pacing::Spin).then_some(&spinner)).unwrap();
                    for _ in 0..3 {
                        let deadline = now_ns() + 3_000_000;
                        timer.sleep_until(deadline).await.unwrap();
                        assert!(now_ns() >= deadline, "{pacing:?}");
                    }
                    let before = now_ns();
                    timer.sleep_until(before - 1_000_000).await.unwrap();
                    // A past deadline neither arms the timer nor waits for
                    // the reactor.
                    assert!(now_ns() - before < 1_000_000, "{pacing:?}");
                }
            })
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn spinning_timers_wake_in_deadline_order_and_let_other_tasks_run() {
        LocalSet::new()
            .run_until(async {
                let spinner = spinning();
                let now = now_ns();
                let waits: Vec<_> = [30_000_000, 10_000_000, 20_000_000]
                    .into_iter()
                    .map(|after| {
                        let timer = Timer::new(Some(&spinner)).unwrap();
                        spawn_local(async move {
                            timer.sleep_until(now + after).await.unwrap();
                            now_ns()
                        })
                    })
                    .collect();
                let other = spawn_local(async { now_ns() });
                let mut woke = Vec::new();
                for wait in waits {
                    woke.push(wait.await.unwrap());
                }
                assert!(
                    other.await.unwrap() < now + 10_000_000,
                    "the other task waited"
                );
                assert!(woke[1] >= now + 10_000_000 && woke[1] < woke[2] && woke[2] < woke[0]);
                assert!(woke[0] >= now + 30_000_000);
            })
            .await;
    }
}

//! The host's CPUs split between the study's two machines: the server's
//! side gets the first half, where nginx runs one worker per CPU, pinned;
//! the client's side the rest, where the load generator's threads run.
//! Apart, as on the study's two machines, a request's wake-ups cross CPUs
//! the same way in every run; shared, how a run's connections fall on
//! nginx's workers moves its median by up to a sixth between runs.

use std::{io, mem};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuSplit {
    pub server: Vec<usize>,
    pub client: Vec<usize>,
}

impl CpuSplit {
    /// The split of the CPUs this process may run on.
    pub fn of_this_process() -> Self {
        let cpus = allowed_cpus().unwrap_or_else(|_| {
            let count = std::thread::available_parallelism().map_or(1, usize::from);
            (0..count).collect()
        });
        Self::of(&cpus)
    }

    /// First half to the server, the rest to the client; a single CPU is
    /// shared.
    pub fn of(cpus: &[usize]) -> Self {
        if cpus.len() < 2 {
            return Self {
                server: cpus.to_vec(),
                client: cpus.to_vec(),
            };
        }
        let (server, client) = cpus.split_at(cpus.len() / 2);
        Self {
            server: server.to_vec(),
            client: client.to_vec(),
        }
    }

    /// Whether the client runs on CPUs the server also runs on.
    pub fn shared(&self) -> bool {
        self.client.iter().any(|cpu| self.server.contains(cpu))
    }
}

/// `cpus` as nginx's `worker_cpu_affinity` mask: CPU 0 rightmost.
pub fn nginx_mask(cpus: &[usize]) -> String {
    let highest = cpus.iter().copied().max().unwrap_or(0);
    (0..=highest)
        .rev()
        .map(|cpu| if cpus.contains(&cpu) { '1' } else { '0' })
        .collect()
}

/// Keeps the calling thread, and the threads it starts from now on, on
/// `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    for &cpu in cpus {
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    if unsafe { libc::sched_setaffinity(0, mem::size_of_val(&set), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn allowed_cpus() -> io::Result<Vec<usize>> {
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, mem::size_of_val(&set), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_gets_the_first_half() {
        assert_eq!(
            CpuSplit::of(&[0, 1]),
            CpuSplit {
                server: vec![0],
                client: vec![1]
            }
        );
        assert_eq!(
            CpuSplit::of(&[2, 3, 5, 7, 8]),
            CpuSplit {
                server: vec![2, 3],
                client: vec![5, 7, 8]
            }
        );
        assert_eq!(
            CpuSplit::of(&[4]),
            CpuSplit {
                server: vec![4],
                client: vec![4]
            }
        );
    }

    #[test]
    fn masks_put_cpu_0_rightmost() {
        assert_eq!(nginx_mask(&[0]), "1");
        assert_eq!(nginx_mask(&[1]), "10");
        assert_eq!(nginx_mask(&[0, 2, 3]), "1101");
    }

    #[test]
    fn a_pinned_thread_runs_only_where_it_was_pinned() {
        let cpus = allowed_cpus().unwrap();
        let last = *cpus.last().unwrap();
        let seen = std::thread::spawn(move || {
            pin_current_thread(&[last]).unwrap();
            // A thread started by a pinned one inherits the pinning.
            std::thread::spawn(allowed_cpus).join().unwrap().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, [last]);
    }
}

//! Reading and switching a device's offload features, as `ethtool -k/-K`
//! does, through the ethtool ioctl in the calling thread's namespace.

use std::{ffi::CStr, io, os::fd::AsRawFd as _};

use serde::{Deserialize, Serialize};

const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

/// The features netprobe may switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feature {
    /// `generic-receive-offload`.
    Gro,
    /// `tx-checksumming`.
    TxChecksum,
}

impl Feature {
    /// The name `ethtool -k` shows.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Gro => "generic-receive-offload",
            Feature::TxChecksum => "tx-checksumming",
        }
    }

    fn commands(self) -> (u32, u32) {
        match self {
            Feature::Gro => (ETHTOOL_GGRO, ETHTOOL_SGRO),
            Feature::TxChecksum => (ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM),
        }
    }
}

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Whether `feature` is on for device `ifindex`.
pub fn get(ifindex: u32, feature: Feature) -> io::Result<bool> {
    let mut value = EthtoolValue {
        cmd: feature.commands().0,
        data: 0,
    };
    ioctl(ifindex, &mut value)?;
    Ok(value.data != 0)
}

/// Switches `feature` on or off for device `ifindex`.
pub fn set(ifindex: u32, feature: Feature, on: bool) -> io::Result<()> {
    let mut value = EthtoolValue {
        cmd: feature.commands().1,
        data: u32::from(on),
    };
    ioctl(ifindex, &mut value)
}

/// The name of device `ifindex`.
pub fn interface_name(ifindex: u32) -> io::Result<String> {
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    if unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null() {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}

fn ioctl(ifindex: u32, value: &mut EthtoolValue) -> io::Result<()> {
    let name = interface_name(ifindex)?;
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *to = from as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (value as *mut EthtoolValue).cast();
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL, &mut request) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

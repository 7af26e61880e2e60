//! x86_64 stub acceptance: the probe kernel and the Debian kernel through the stub, per codec and firmware.

#[allow(unused_imports)]
use super::*;

pub const TESTS: &[BootTest] = &[];

//! Reliability: damaged images and boot-time resource failures.

#[allow(unused_imports)]
use super::*;

pub const TESTS: &[BootTest] = &[];

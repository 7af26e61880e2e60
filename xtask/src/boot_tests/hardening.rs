//! Hardening: KASLR, 5-level paging, W^X, Secure Boot.

#[allow(unused_imports)]
use super::*;

pub const TESTS: &[BootTest] = &[];

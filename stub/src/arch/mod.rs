//! Architecture-specific hand-off code.

pub mod x86_64;

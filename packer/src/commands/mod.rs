//! One module per subcommand.

pub mod extract;
pub mod inspect;
pub mod pack;
pub mod pcr;
pub mod verify;

/// How a command ended when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// `verify` found violations (exit status 1).
    Violations,
}

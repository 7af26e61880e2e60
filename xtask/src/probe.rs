//! Building the probe kernel and its relocation table (owned by the probe-kernel work).

pub fn cli(_args: &[String]) -> Result<(), String> {
    Err("not implemented yet".into())
}

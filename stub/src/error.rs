//! The one error type of the pipeline: which step failed and why, and the EFI status returned.

use crate::decode::DecodeError;
use crate::payload::PayloadError;
use uefi::Status;
use zboot_format::cmdline::CmdlineError;

#[derive(Debug)]
pub enum Error {
    Payload(PayloadError),
    /// An EFI call failed (`what` names it).
    Efi(&'static str, Status),
    Decode(DecodeError),
    /// The compressed stream does not match `stream_check` (checked before decoding).
    StreamChecksum,
    Relocs(zboot_format::relocs::RelocError),
    /// The image's own `.cmdline` breaks a rule of `zboot_format::cmdline` (never "absent").
    EmbeddedCmdline(CmdlineError),
    /// The composed line (embedded + loader options) is longer than the kernel keeps.
    CmdlineTooLong(CmdlineError),
    /// A handover loader's boot_params point at memory nobody allocated.
    LoaderParams(zboot_stub::arch::current::loader_params::ParamsError),
    /// Entered as a bzImage: what the loader handed over contradicts its e820 map.
    Handover(zboot_stub::arch::current::bare_map::HandoverError),
    /// Entered as a bzImage: no free RAM left for this.
    NoMemory(&'static str),
}

impl Error {
    pub fn status(&self) -> Status {
        match self {
            Error::Efi(_, s) => *s,
            Error::Decode(_) | Error::StreamChecksum => Status::CRC_ERROR,
            Error::Payload(_) | Error::Relocs(_) | Error::EmbeddedCmdline(_) => Status::LOAD_ERROR,
            Error::CmdlineTooLong(_) | Error::LoaderParams(_) | Error::Handover(_) => {
                Status::INVALID_PARAMETER
            }
            Error::NoMemory(_) => Status::OUT_OF_RESOURCES,
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Payload(e) => write!(f, "{e}"),
            Error::Efi(what, s) => write!(f, "{what} failed: {s:?}"),
            Error::Decode(e) => write!(f, "decompression failed: {e}"),
            Error::StreamChecksum => {
                f.write_str("compressed kernel does not match its checksum (damaged image)")
            }
            Error::Relocs(e) => write!(f, "relocation table rejected: {e}"),
            Error::EmbeddedCmdline(e) => write!(f, "embedded command line refused: {e}"),
            Error::LoaderParams(e) => write!(f, "{e}"),
            Error::CmdlineTooLong(e) => write!(f, "kernel command line refused: {e}"),
            Error::Handover(e) => write!(f, "{e}"),
            Error::NoMemory(what) => write!(f, "no free RAM in the e820 map for {what}"),
        }
    }
}

impl From<zboot_stub::unpack::UnpackError> for Error {
    fn from(e: zboot_stub::unpack::UnpackError) -> Error {
        use zboot_stub::unpack::UnpackError as U;
        match e {
            U::Region => Error::NoMemory("the kernel (region smaller than its header says)"),
            U::StreamChecksum => Error::StreamChecksum,
            U::Decode(e) => Error::Decode(e),
            U::Relocs(e) => Error::Relocs(e),
        }
    }
}

impl From<zboot_stub::cmdline::LineError> for Error {
    fn from(e: zboot_stub::cmdline::LineError) -> Error {
        use zboot_stub::cmdline::LineError as L;
        match e {
            L::Embedded(e) => Error::EmbeddedCmdline(e),
            L::TooLong(e) => Error::CmdlineTooLong(e),
        }
    }
}

/// `result.efi("what")?`: name the EFI call that failed.
pub trait Context<T> {
    fn efi(self, what: &'static str) -> Result<T, Error>;
}

impl<T, D: core::fmt::Debug> Context<T> for uefi::Result<T, D> {
    fn efi(self, what: &'static str) -> Result<T, Error> {
        self.map_err(|e| Error::Efi(what, e.status()))
    }
}

//! The baseline of `cargo xtask bench`'s pre-kernel stage (feature `stage-baseline`, never
//! embedded): booted as the kernel would be, padded to an image's size, it gives the guest time
//! the firmware and the loader spend before any image's first instruction, which the bench
//! subtracts from the kernel's (docs/performance.md). Without the feature both functions fold
//! away: no counter is read.

/// Whether this build is the baseline app.
pub const ON: bool = cfg!(feature = "stage-baseline");

/// The time-stamp counter in the baseline app, 0 in a stub.
pub fn counter() -> u64 {
    if ON {
        zboot_stub::arch::current::cpu::counter()
    } else {
        0
    }
}

/// Prints the counter read at entry and powers the machine off (never returns; typed as the
/// entry's status so that a stub build keeps the call as ordinary dead code). The app is not
/// packed, so it has no descriptor and is never relocated by us: nothing here formats (that
/// calls through vtables) — the line is built digit by digit on the stack.
pub fn report_and_power_off(entered_at: u64) -> uefi::Status {
    let mut line = [0u16; 48];
    let mut at = 0;
    let mut put = |c: u8| {
        line[at] = u16::from(c);
        at += 1;
    };
    b"ZBOOT-BASE tsc=".iter().for_each(|&c| put(c));
    let mut digits = [0u8; 20];
    let (mut v, mut n) = (entered_at, 0);
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    digits[..n].iter().rev().for_each(|&c| put(c));
    b"\r\n".iter().for_each(|&c| put(c));
    if let Ok(text) = uefi::CStr16::from_u16_with_nul(&line[..=at]) {
        uefi::system::with_stdout(|out| {
            let _ = out.output_string(text);
        });
    }
    uefi::runtime::reset(
        uefi::runtime::ResetType::SHUTDOWN,
        uefi::Status::SUCCESS,
        None,
    )
}

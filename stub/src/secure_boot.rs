//! The firmware's Secure Boot state as Linux's EFI stub works it out (`enum efi_secureboot_mode`
//! in include/linux/efi.h, the value the kernel's lockdown and IMA policies read), and the one
//! rule both platforms lock the command line by.

pub const UNSET: u8 = 0;
pub const UNKNOWN: u8 = 1;
pub const DISABLED: u8 = 2;
pub const ENABLED: u8 = 3;

/// What the variables say, as libstub secureboot.c `efi_get_secureboot` reads them:
/// `SecureBoot` (`None` = not found, `Some(None)` = unreadable), `SetupMode`, and shim's
/// `MokSBStateRT` (validation disabled in shim).
pub fn mode(
    secure_boot: Option<Option<u8>>,
    setup_mode: Option<u8>,
    mok_sb_state_rt: Option<u8>,
) -> u8 {
    match secure_boot {
        None => DISABLED,
        Some(None) => UNKNOWN,
        Some(Some(0)) => DISABLED,
        Some(Some(_)) if setup_mode == Some(1) => DISABLED,
        Some(Some(_)) if setup_mode.is_none() => UNKNOWN,
        Some(Some(_)) if mok_sb_state_rt == Some(1) => DISABLED,
        Some(Some(_)) => ENABLED,
    }
}

/// Whether a signed (embedded) command line must stand alone: Secure Boot is on, or its state
/// could not be read (UNKNOWN is treated as on, so an unreadable variable never opens the
/// line). The same rule for the firmware's state (EFI) and for the state a loader reports in
/// `boot_params.secure_boot` (bare), where UNSET (a loader that says nothing) is not locked.
pub fn locked(mode: u8) -> bool {
    matches!(mode, ENABLED | UNKNOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_like_libstub() {
        assert_eq!(mode(None, None, None), DISABLED);
        assert_eq!(mode(Some(None), Some(0), None), UNKNOWN);
        assert_eq!(mode(Some(Some(0)), Some(0), None), DISABLED);
        assert_eq!(mode(Some(Some(1)), Some(1), None), DISABLED);
        assert_eq!(mode(Some(Some(1)), None, None), UNKNOWN);
        assert_eq!(mode(Some(Some(1)), Some(0), Some(1)), DISABLED);
        assert_eq!(mode(Some(Some(1)), Some(0), None), ENABLED);
    }

    #[test]
    fn unknown_locks_unset_does_not() {
        // The bare pipeline used to lock on ENABLED only: a loader reporting UNKNOWN let its
        // options in after a signed line. One rule now.
        assert!(locked(ENABLED));
        assert!(locked(UNKNOWN));
        assert!(!locked(DISABLED));
        assert!(!locked(UNSET));
        assert!(!locked(0xff));
    }
}

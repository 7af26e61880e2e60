//! What a boot test prints. Boot tests run two at a time ([`crate::test_cmd`]); each one's lines
//! are collected on its own thread and printed together when it ends, so the log reads one test
//! at a time. Outside a collecting thread [`say!`](macro@crate::say) prints at once, like `println!`.

use std::cell::RefCell;

thread_local! {
    static LINES: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Prints `line`, or keeps it for the end of this thread's test (see [`collect`]).
pub fn line(line: std::fmt::Arguments<'_>) {
    let kept = LINES.with(|l| match l.borrow_mut().as_mut() {
        Some(buf) => {
            use std::fmt::Write;
            let _ = writeln!(buf, "{line}");
            true
        }
        None => false,
    });
    if !kept {
        println!("{line}");
    }
}

/// Runs `f` with its [`say!`](macro@crate::say) lines kept, and returns them with its result.
pub fn collect<T>(f: impl FnOnce() -> T) -> (T, String) {
    let outer = LINES.with(|l| l.replace(Some(String::new())));
    let r = f();
    let lines = LINES.with(|l| l.replace(outer)).unwrap_or_default();
    (r, lines)
}

/// `println!` for code a boot test runs: see the module's docs.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say::line(format_args!($($arg)*))
    };
}

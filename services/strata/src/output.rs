//! Command output on stdout.
//!
//! Operators pipe command output into `head`, `grep -m1` and the like; when the reader goes
//! away, the command ends quietly instead of panicking as `println!` does.

use std::io::Write;

/// Writes one line to stdout; exits with status 0 when stdout has been closed.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{args}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {error}");
        std::process::exit(1);
    }
}

/// Prints a line like `println!`, but a closed stdout ends the process quietly.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use out;

//! The `mvdit` command line over the `mvdit-train` library: argument definitions (`args`),
//! the backend flags (`backend_args`), one module per command (`commands/`), the progress bar
//! and Ctrl-C (`progress`). [`main_with`] is the whole command, for the binary and for
//! `python -m mvdit`.

pub mod args;
pub mod backend_args;
pub mod commands;
pub mod progress;

use clap::Parser;
use std::ffi::OsString;

/// Runs the command line `args` (the program name first) and returns the exit status: 0, or 1
/// after one line `error: ...` on stderr (2 for argument errors, with clap's message).
pub fn main_with<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match args::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    mvdit_model::checksum::set_verify(!cli.no_verify);
    match commands::run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

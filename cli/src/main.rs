//! The `mvdit` binary: [`mvdit_cli::main_with`] over the process's arguments.

fn main() {
    std::process::exit(mvdit_cli::main_with(std::env::args_os()));
}

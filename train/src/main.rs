use clap::Parser;

fn main() {
    let cli = mvdit_train::cli::Cli::parse();
    if let Err(e) = mvdit_train::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

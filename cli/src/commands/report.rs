//! `mvdit report`: one self-contained HTML page (and PNG figures) of run directories.

use mvdit_model::Result;
use mvdit_train::report::signals::Thresholds;
use std::path::{Path, PathBuf};

pub fn report_command(runs: &[PathBuf], out: &Path, figures: Option<&Path>, title: &str, thresholds: &[String]) -> Result<()> {
    let th = Thresholds::with_overrides(thresholds)?;
    mvdit_train::report::write_report(runs, out, title, &th, figures)?;
    eprintln!("report: {}", out.display());
    Ok(())
}

//! `mvdit prepare`: an image folder to training shards, with a bar of images done.

use crate::backend_args::BackendArgs;
use mvdit_model::Result;
use mvdit_train::prepare::{prepare, PrepareOptions};
use mvdit_train::with_backend;

pub fn prepare_command(o: PrepareOptions, backend: &BackendArgs) -> Result<()> {
    let mut bar = crate::progress::ItemBar::new("images");
    with_backend!(backend.spec()?, |be| prepare(&be, &o, &mut bar))
}

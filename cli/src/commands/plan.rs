//! `mvdit plan`: exact parameter count, memory and FLOPs of a config, and the fewest devices
//! that hold it (`mvdit_train::plan`).

use mvdit_model::Result;
use mvdit_train::plan::{parse_size, Plan, PlanInput};
use std::path::Path;

pub fn plan_command(config: &Path, batch: Option<usize>, device_memory: &str, json: bool) -> Result<()> {
    let device = parse_size(device_memory).map_err(|e| e.context("--device-memory"))?;
    let plan = Plan::new(PlanInput::read(config, batch, Some(device as usize))?)?;
    if json {
        println!("{}", plan.to_json(device)?);
    } else {
        print!("{}", plan.render(device)?);
    }
    Ok(())
}

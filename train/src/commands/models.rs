//! `train --list-models` and `train --model NAME --summary`.

use anyhow::Result;
use cifar_models::summary::{format_layer_table, format_model_table, model_rows};

pub fn list(json: bool) -> Result<()> {
    let rows = model_rows();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", format_model_table(&rows));
    }
    Ok(())
}

pub fn summary(name: &str) -> Result<()> {
    let info = cifar_models::info(name)?;
    let graph = cifar_models::build(name)?;
    println!("{name}: the seed's {}", info.constructor);
    print!("{}", format_layer_table(&graph));
    Ok(())
}

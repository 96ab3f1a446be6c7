pub mod models;
pub mod export;
pub mod train;
pub mod quantize;

pub mod models;
pub mod export;

//! Benchmarks: the in-process latency benchmark ([`latency`], also behind
//! `GET /v1/models/{name}/benchmark`), the HTTP load driver ([`http_load`]), and `serve bench`
//! ([`run`]), which measures every model of a folder and writes a report ([`report`]).

mod http_client;
pub mod http_load;
pub mod latency;
pub mod machine;
pub mod report;
pub mod run;
pub mod stats;

pub use run::{run, BenchError, BenchOptions};

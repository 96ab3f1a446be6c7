//! End-to-end tests live in `tests/tests/`; they drive the built binaries (`train` exports
//! models, `serve` serves them) and talk to the server as its clients would.

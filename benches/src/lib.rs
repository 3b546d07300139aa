//! Benchmarks live in this crate's bench targets.

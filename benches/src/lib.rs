//! Benchmarks and the `points-load` load tool for the points ledger.
//!
//! The tool drives a running `points-server` over gRPC. Its logic lives here so that the
//! CI smoke test (`tests/tests/load_smoke.rs`) runs the same code as the binary:
//!
//! - [`seed`]: a program, an org unit, merchants with till keys, an activity, and M
//!   members with points, in Submit / RecordService / ApproveService batches.
//! - [`load`]: N concurrent clients send a [`mix`] of writes, unary or in Submit batches,
//!   closed loop or at a fixed offered rate, into [`stats`] histograms.
//! - [`verify`]: Ledger.Audit and a check that every acknowledged write is journalled.
//! - [`echo`] and [`fsync`]: the ceilings beside the figures: tonic requests/s on
//!   loopback, and the disk's syncs/s.
//! - [`process`]: starts and stops a real server for tests and scripted runs.

// Rates, means and seconds are measurements, not money: floats are right here.
#![allow(clippy::float_arithmetic)]

pub mod client;
pub mod echo;
pub mod fsync;
pub mod ids;
pub mod load;
pub mod mix;
pub mod process;
pub mod seed;
pub mod stats;
pub mod verify;

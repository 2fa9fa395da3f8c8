//! # points-grpc: the service merchants' tills and community centres call
//!
//! The thin shell around [`points_core`]: it owns the clock, the sockets and the disk.
//!
//! - [`engine`]: every programme's ledger in memory and one writer thread per programme
//!   that group-commits decided entries to a [`store`] and answers callers only once their
//!   entries are durable.
//! - [`store`]: the journal on disk: embedded SQLite (default), PostgreSQL (several servers
//!   on one database), and memory (tests).
//! - [`service`]: the four gRPC services of `proto/points/v1`, over the engine.
//! - [`auth`]: API keys and the per-RPC policy table, enforced in one tower layer.
//! - [`signing`]: the per-programme signing and pseudonym keys, derived from one secret
//!   kept in the store.
//! - [`convert`]: wire ↔ core conversions and the mapping of every failure to a status.
//! - [`server`], [`config`], [`metrics`]: the `points-server` binary's pieces.
//! - [`overload`]: load shedding (`RESOURCE_EXHAUSTED`), per-key limits and deadlines.
//! - [`pb`]: the generated protobuf code, compiled from the .proto files without protoc.
pub mod auth;
pub mod board;
pub mod config;
pub mod convert;
pub mod engine;
pub mod metrics;
pub mod overload;
pub mod pb;
pub mod server;
pub mod service;
pub mod signing;
pub mod store;
pub mod verify;

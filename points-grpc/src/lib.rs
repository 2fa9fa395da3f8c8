//! placeholder
pub mod auth;
pub mod config;
pub mod convert;
pub mod engine;
pub mod metrics;
pub mod pb;
pub mod server;
pub mod service;
pub mod store;

//! Generated protobuf messages and tonic services of the `points.v1` wire
//! contract (see `proto/points/v1/*.proto`).

#![allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    clippy::unwrap_used,
    clippy::expect_used
)]

tonic::include_proto!("points.v1");

/// Encoded `google.protobuf.FileDescriptorSet` of the `points.v1` contract and
/// its imports, with source info (comments), for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/points_descriptor.bin"));

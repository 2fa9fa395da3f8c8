//! Cross-crate tests for the points ledger. The tests live in `tests/tests/*.rs`: they start
//! the real `points-server` binary on loopback and drive it with the generated gRPC clients
//! and the `points` command-line client.

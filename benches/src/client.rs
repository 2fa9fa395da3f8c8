//! Connecting to a points server: HTTP/2 channels, the API key header, and naming errors.

use anyhow::Context as _;
use points_grpc::pb;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// Largest message the tool accepts (big RecordService/ApproveService answers).
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// An API key, ready to put on requests as `authorization: Bearer <secret>`.
#[derive(Clone, Debug)]
pub struct Key(MetadataValue<Ascii>);

impl Key {
    /// The header value for a secret.
    pub fn new(secret: &str) -> anyhow::Result<Self> {
        let value = format!("Bearer {}", secret.trim())
            .parse()
            .context("the API key is not a valid header value")?;
        Ok(Key(value))
    }

    /// Wraps a message into a request carrying the key.
    pub fn req<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        request
    }
}

/// An endpoint URL from `host:port` or a full `http://host:port`.
pub fn endpoint_url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// Opens `count` HTTP/2 connections to `addr` (each a separate TCP connection).
pub async fn connect(addr: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(endpoint_url(addr))
        .with_context(|| format!("bad server address {addr:?}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .initial_connection_window_size(Some(16 * 1024 * 1024))
        .initial_stream_window_size(Some(4 * 1024 * 1024));
    let mut channels = Vec::with_capacity(count.max(1));
    for _ in 0..count.max(1) {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to {addr}"))?,
        );
    }
    Ok(channels)
}

/// The clients of the four services over one channel.
#[derive(Clone)]
pub struct Clients {
    /// PointOfSale.
    pub pos: pb::point_of_sale_client::PointOfSaleClient<Channel>,
    /// Recording.
    pub recording: pb::recording_client::RecordingClient<Channel>,
    /// Admin.
    pub admin: pb::admin_client::AdminClient<Channel>,
    /// Ledger.
    pub ledger: pb::ledger_client::LedgerClient<Channel>,
}

impl Clients {
    /// Clients over `channel` that accept large answers.
    pub fn new(channel: Channel) -> Self {
        Clients {
            pos: pb::point_of_sale_client::PointOfSaleClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            recording: pb::recording_client::RecordingClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            admin: pb::admin_client::AdminClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            ledger: pb::ledger_client::LedgerClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE),
        }
    }
}

/// The `google.rpc.ErrorInfo` reason of a status, or `-` when it has none.
pub fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_else(|| "-".to_owned())
}

/// The tally key of a failed call: `FailedPrecondition/INSUFFICIENT_POINTS`.
pub fn status_key(status: &Status) -> String {
    format!("{:?}/{}", status.code(), reason(status))
}

/// The tally key of a failed Submit operation, in the same form as [`status_key`].
pub fn operation_error_key(error: &pb::OperationError) -> String {
    format!("{:?}/{}", Code::from_i32(error.code), error.reason)
}

/// A status as an error with its code, reason and message, for `?` in setup code.
pub fn status_error(what: &str, status: &Status) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}: {} {}: {}",
        status.code(),
        reason(status),
        status.message()
    )
}

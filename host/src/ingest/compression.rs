//! Compressed request bodies: `Content-Encoding: gzip`, `deflate` or `zstd`.
//!
//! The body is decoded as a stream (async-compression) and read into memory
//! only up to `max_body_bytes` of *decompressed* bytes: a decompression bomb
//! costs at most that much memory before it is answered with 413. The
//! compressed bytes are bounded by the same limit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{DeflateDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::StreamReader;

use super::errors::ApiError;

/// The content codings ingest decodes.
pub const ACCEPTED: &[&str] = &["gzip", "deflate", "zstd", "identity"];

/// A request body's content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Not compressed.
    Identity,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
    /// HTTP `deflate`: zlib (RFC 1950); raw deflate (RFC 1951), which some
    /// clients send, is recognised too.
    Deflate,
    /// Zstandard (RFC 8878), possibly several frames.
    Zstd,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Zstd => "zstd",
        }
    }
}

/// The request's `Content-Encoding`; one coding (or none, or `identity`).
pub fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let values: Vec<&str> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("identity"))
        .collect();
    match values.as_slice() {
        [] => Ok(Encoding::Identity),
        [one] => match one.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "deflate" => Ok(Encoding::Deflate),
            "zstd" => Ok(Encoding::Zstd),
            _ => Err(ApiError::UnsupportedEncoding {
                got: (*one).to_string(),
                accepted: ACCEPTED,
            }),
        },
        _ => Err(ApiError::UnsupportedEncoding {
            got: values.join(", "),
            accepted: ACCEPTED,
        }),
    }
}

/// Counts the compressed bytes read and fails past `limit`.
struct Counted<S> {
    inner: S,
    seen: usize,
    limit: usize,
    over: bool,
}

impl<S> Stream for Counted<S>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len();
                if self.seen > self.limit {
                    self.over = true;
                    return Poll::Ready(Some(Err(io::Error::other("compressed body too large"))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

/// Read a compressed body, decompressing it as it arrives, into at most
/// `limit` decompressed bytes. Past the limit: 413 (the compressed rest is
/// drained, up to `drain` bytes, so the client reads the answer). A body
/// that is not valid in its coding: 400.
pub async fn read_compressed(
    encoding: Encoding,
    body: Body,
    limit: usize,
    drain: usize,
) -> Result<Bytes, ApiError> {
    let stream = body.into_data_stream().map_err(io::Error::other);
    let mut counted = Counted {
        inner: stream,
        seen: 0,
        limit,
        over: false,
    };
    let result = {
        let mut reader = BufReader::new(StreamReader::new(&mut counted));
        let decoder: Pin<Box<dyn AsyncRead + Send + '_>> = match encoding {
            Encoding::Identity => Box::pin(reader),
            Encoding::Gzip => {
                let mut d = GzipDecoder::new(reader);
                d.multiple_members(true);
                Box::pin(d)
            }
            Encoding::Zstd => {
                let mut d = ZstdDecoder::new(reader);
                d.multiple_members(true);
                Box::pin(d)
            }
            Encoding::Deflate => {
                let head = reader.fill_buf().await.unwrap_or(&[]);
                if is_zlib_header(head) {
                    Box::pin(ZlibDecoder::new(reader))
                } else {
                    Box::pin(DeflateDecoder::new(reader))
                }
            }
        };
        let mut out = Vec::with_capacity(8 * 1024);
        // One byte past the limit tells "exactly the limit" from "more".
        let read = decoder.take(limit as u64 + 1).read_to_end(&mut out).await;
        read.map(|_| out)
    };
    let too_large = ApiError::TooLarge { limit };
    match result {
        Ok(out) if out.len() > limit => {
            drain_rest(&mut counted.inner, drain).await;
            Err(too_large)
        }
        Ok(out) => Ok(Bytes::from(out)),
        Err(_) if counted.over => {
            drain_rest(&mut counted.inner, drain).await;
            Err(too_large)
        }
        Err(e) => Err(ApiError::Invalid {
            message: format!("the request body is not valid {}: {e}", encoding.name()),
            rejected: Vec::new(),
        }),
    }
}

/// Read and discard what is left of a body, up to `bound` bytes.
async fn drain_rest<S>(stream: &mut S, bound: usize)
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > bound {
            break;
        }
    }
}

/// RFC 1950: CM = 8 (deflate), CINFO <= 7, and the header check bits.
fn is_zlib_header(head: &[u8]) -> bool {
    match head {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    async fn read(encoding: Encoding, body: Vec<u8>, limit: usize) -> Result<Bytes, ApiError> {
        read_compressed(encoding, Body::from(body), limit, limit * 8).await
    }

    #[test]
    fn content_encoding_is_negotiated() {
        assert_eq!(encoding(&HeaderMap::new()).unwrap(), Encoding::Identity);
        assert_eq!(encoding(&headers("identity")).unwrap(), Encoding::Identity);
        assert_eq!(encoding(&headers("GZIP")).unwrap(), Encoding::Gzip);
        assert_eq!(encoding(&headers("deflate")).unwrap(), Encoding::Deflate);
        assert_eq!(encoding(&headers("zstd")).unwrap(), Encoding::Zstd);
        assert!(matches!(
            encoding(&headers("br")),
            Err(ApiError::UnsupportedEncoding { .. })
        ));
        assert!(matches!(
            encoding(&headers("gzip, zstd")),
            Err(ApiError::UnsupportedEncoding { .. })
        ));
    }

    #[tokio::test]
    async fn every_coding_round_trips() {
        let data = b"{\"event_id\":\"e\"}\n".repeat(100);
        let zstd = zstd::encode_all(&data[..], 3).unwrap();
        for (encoding, body) in [
            (Encoding::Gzip, gzip(&data)),
            (Encoding::Deflate, zlib(&data)),
            (Encoding::Deflate, raw_deflate(&data)),
            (Encoding::Zstd, zstd),
        ] {
            let out = read(encoding, body, 1 << 20).await.unwrap();
            assert_eq!(&out[..], &data[..], "{encoding:?}");
        }
        // Two gzip members are one body.
        let mut two = gzip(b"ab");
        two.extend(gzip(b"cd"));
        assert_eq!(&read(Encoding::Gzip, two, 100).await.unwrap()[..], b"abcd");
    }

    #[tokio::test]
    async fn a_bomb_is_too_large_at_the_decompressed_limit() {
        let bomb = zstd::encode_all(&vec![0u8; 64 << 20][..], 3).unwrap();
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let limit = 1 << 20;
        assert!(matches!(
            read(Encoding::Zstd, bomb, limit).await,
            Err(ApiError::TooLarge { .. })
        ));
        // Exactly the limit is fine; one byte more is not.
        let exact = gzip(&vec![b'x'; limit]);
        assert_eq!(
            read(Encoding::Gzip, exact, limit).await.unwrap().len(),
            limit
        );
        let over = gzip(&vec![b'x'; limit + 1]);
        assert!(matches!(
            read(Encoding::Gzip, over, limit).await,
            Err(ApiError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn corrupt_bodies_are_invalid() {
        let mut body = gzip(b"hello world, hello world");
        let n = body.len();
        body[n / 2] ^= 0xff;
        body.truncate(n - 3);
        match read(Encoding::Gzip, body, 1000).await {
            Err(ApiError::Invalid { message, .. }) => {
                assert!(message.contains("not valid gzip"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read(Encoding::Zstd, b"plain text".to_vec(), 1000).await,
            Err(ApiError::Invalid { .. })
        ));
    }
}

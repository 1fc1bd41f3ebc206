//! gRPC on a Unix socket for every client. grpcio (since 1.57), grpc-java and others send the
//! socket's path as the `:authority` of each request; HTTP/2's rules, and so the h2 server
//! under tonic, refuse it with a stream reset. Each connection is relayed through an
//! in-process pipe that rewrites such an authority to `localhost` in the request headers and
//! passes every other byte through unchanged.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::Stream;
use tracing::debug;

/// The HTTP/2 client connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer accepts (SETTINGS_MAX_FRAME_SIZE's floor).
const MAX_OUT_FRAME: usize = 16_384;
/// A larger request header block closes the connection.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// HPACK's default dynamic table size, which the server advertises.
const HEADER_TABLE_SIZE: usize = 4096;
const PIPE_BYTES: usize = 256 * 1024;

/// One accepted Unix-socket connection, as tonic sees it: the server side of the relay.
pub struct UnixConnection {
    pipe: DuplexStream,
}

impl tonic::transport::server::Connected for UnixConnection {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for UnixConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl AsyncWrite for UnixConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

/// Accepts connections on `listener` and yields the relayed ones.
pub fn incoming(listener: UnixListener) -> impl Stream<Item = io::Result<UnixConnection>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| relay(stream));
        Some((accepted, listener))
    })
}

/// Starts relaying `client` and returns the server's end.
fn relay(client: UnixStream) -> UnixConnection {
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let (client_read, mut client_write) = client.into_split();
    let (server_read, mut server_write) = tokio::io::split(theirs);
    tokio::spawn(async move {
        if let Err(error) = rewrite_requests(client_read, &mut server_write).await {
            debug!(error = %error, "gRPC Unix-socket connection closed");
        }
        // NOTE: however the client's side ended, the server must see the end of its input;
        // the pipe stays open while the other half is held, so dropping is not enough.
        let _ = server_write.shutdown().await;
    });
    tokio::spawn(async move {
        let mut server_read = server_read;
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    UnixConnection { pipe: ours }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Copies the client's HTTP/2 frames to the server, re-encoding each request header block
/// whose `:authority` is not a valid authority.
async fn rewrite_requests<R, W>(mut client: R, server: &mut W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; PREFACE.len()];
    client.read_exact(&mut preface).await?;
    server.write_all(&preface).await?;
    if &preface != PREFACE {
        // NOTE: not HTTP/2 with prior knowledge; the server answers it as it would.
        return tokio::io::copy(&mut client, server).await.map(drop);
    }
    let mut headers = HeaderRewriter::new();
    let mut pending: Option<PendingHeaders> = None;
    loop {
        let mut head = [0u8; FRAME_HEADER_LEN];
        match client.read_exact(&mut head).await {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error),
        }
        let length = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if kind != HEADERS && kind != CONTINUATION {
            if pending.is_some() {
                // NOTE: a frame inside an open header block is a connection error; passing it on
                // would desynchronise the server's header table from ours.
                return Err(invalid("a frame interrupted a request header block"));
            }
            // NOTE: streamed, not buffered: only header blocks are held in memory.
            server.write_all(&head).await?;
            let copied = tokio::io::copy(&mut (&mut client).take(length as u64), server).await?;
            if copied != length as u64 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            continue;
        }
        if length > MAX_HEADER_BLOCK {
            return Err(invalid("request header block too large"));
        }
        let mut payload = vec![0u8; length];
        client.read_exact(&mut payload).await?;
        match (kind, pending.as_mut()) {
            (HEADERS, None) => {
                let (priority, fragment) = headers_fragment(flags, &payload)?;
                let block = PendingHeaders { stream_id, flags, priority, block: fragment.to_vec() };
                if flags & END_HEADERS != 0 {
                    server.write_all(&headers.finish(block)?).await?;
                } else {
                    pending = Some(block);
                }
            }
            (CONTINUATION, Some(block)) if block.stream_id == stream_id => {
                if block.block.len() + payload.len() > MAX_HEADER_BLOCK {
                    return Err(invalid("request header block too large"));
                }
                block.block.extend_from_slice(&payload);
                if flags & END_HEADERS != 0 {
                    if let Some(block) = pending.take() {
                        server.write_all(&headers.finish(block)?).await?;
                    }
                }
            }
            // NOTE: a HEADERS inside an open block, or a stray CONTINUATION, is a protocol error.
            _ => return Err(invalid("HEADERS and CONTINUATION frames out of order")),
        }
    }
}

/// A request header block being collected from HEADERS and CONTINUATION frames.
struct PendingHeaders {
    stream_id: u32,
    flags: u8,
    /// The 5 bytes of the PRIORITY flag's fields, when present.
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

/// Returns a HEADERS frame's priority fields and its header block fragment, padding removed.
fn headers_fragment(flags: u8, payload: &[u8]) -> io::Result<(Option<[u8; 5]>, &[u8])> {
    let mut body = payload;
    let mut padding = 0usize;
    if flags & PADDED != 0 {
        let (&pad, rest) = body.split_first().ok_or_else(|| invalid("empty padded HEADERS frame"))?;
        padding = usize::from(pad);
        body = rest;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let fields: [u8; 5] = body.get(..5).and_then(|b| b.try_into().ok()).ok_or_else(|| invalid("short HEADERS"))?;
        priority = Some(fields);
        body = &body[5..];
    }
    let end = body.len().checked_sub(padding).ok_or_else(|| invalid("HEADERS padding exceeds the frame"))?;
    Ok((priority, &body[..end]))
}

/// Decodes request header blocks with the client's HPACK context and encodes them again with
/// one of its own towards the server.
struct HeaderRewriter {
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
}

impl HeaderRewriter {
    fn new() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        let mut encoder = loona_hpack::Encoder::new();
        encoder.set_max_table_size(HEADER_TABLE_SIZE);
        Self { decoder, encoder }
    }

    /// Returns the frames that carry `pending` to the server.
    fn finish(&mut self, pending: PendingHeaders) -> io::Result<BytesMut> {
        let mut fields =
            self.decoder.decode(&pending.block).map_err(|e| invalid(format!("undecodable request headers: {e:?}")))?;
        for (name, value) in &mut fields {
            if name.as_slice() == b":authority" && http::uri::Authority::try_from(value.as_slice()).is_err() {
                *value = b"localhost".to_vec();
            }
        }
        let block = self.encoder.encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        Ok(frames(&pending, &block))
    }
}

/// Splits a header block into one HEADERS frame and as many CONTINUATION frames as needed.
fn frames(pending: &PendingHeaders, block: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(block.len() + 2 * FRAME_HEADER_LEN + 5);
    let priority_len = if pending.priority.is_some() { 5 } else { 0 };
    let first_len = block.len().min(MAX_OUT_FRAME - priority_len);
    let (first, mut rest) = block.split_at(first_len);
    let mut flags = pending.flags & END_STREAM;
    if pending.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    put_frame_header(&mut out, priority_len + first.len(), HEADERS, flags, pending.stream_id);
    if let Some(fields) = pending.priority {
        out.put_slice(&fields);
    }
    out.put_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_OUT_FRAME));
        let flags = if tail.is_empty() { END_HEADERS } else { 0 };
        put_frame_header(&mut out, chunk.len(), CONTINUATION, flags, pending.stream_id);
        out.put_slice(chunk);
        rest = tail;
    }
    out
}

fn put_frame_header(out: &mut BytesMut, length: usize, kind: u8, flags: u8, stream_id: u32) {
    // NOTE: lengths here are at most MAX_OUT_FRAME, so they fit the 24-bit field.
    out.put_slice(&(length as u32).to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream_id);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_frame_header(&mut out, payload.len(), kind, flags, stream_id);
        out.put_slice(payload);
        out.to_vec()
    }

    /// Reads the frames of `bytes` (after the preface) as (kind, flags, stream, payload).
    fn parse(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut frames = Vec::new();
        while bytes.len() >= FRAME_HEADER_LEN {
            let length = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            frames.push((bytes[3], bytes[4], stream, bytes[9..9 + length].to_vec()));
            bytes = &bytes[9 + length..];
        }
        frames
    }

    async fn relayed(input: Vec<u8>) -> Vec<u8> {
        let (mut client, client_side) = tokio::io::duplex(1 << 20);
        let (server_side, mut server) = tokio::io::duplex(1 << 20);
        client.write_all(&input).await.expect("write");
        drop(client);
        let mut server_side = server_side;
        rewrite_requests(client_side, &mut server_side).await.expect("relay");
        server_side.shutdown().await.expect("shutdown");
        let mut out = Vec::new();
        server.read_to_end(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn a_socket_path_authority_becomes_localhost_and_the_rest_passes() {
        let mut client = loona_hpack::Encoder::new();
        let request: [(&[u8], &[u8]); 5] = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/tensorflow.serving.PredictionService/Predict"),
            (b":authority", b"%2Frun%2Ftf-serving.sock"),
            (b"te", b"trailers"),
        ];
        let block = client.encode(request);
        let (first, second) = block.split_at(10);
        // A padded HEADERS frame, a CONTINUATION, then a DATA frame that must pass untouched.
        let mut padded = vec![3u8];
        padded.extend_from_slice(first);
        padded.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, PADDED, 1, &padded));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, second));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        let out = relayed(input).await;
        assert_eq!(&out[..PREFACE.len()], PREFACE);
        let frames = parse(&out[PREFACE.len()..]);
        assert_eq!(frames.len(), 2, "{frames:?}");
        let (kind, flags, stream, block) = &frames[0];
        assert_eq!((*kind, *flags, *stream), (HEADERS, END_HEADERS, 1));
        let fields = loona_hpack::Decoder::new().decode(block).expect("decodes");
        let authority = fields.iter().find(|(n, _)| n == b":authority").map(|(_, v)| v.clone());
        assert_eq!(authority.as_deref(), Some(&b"localhost"[..]));
        assert_eq!(fields.len(), 5);
        assert_eq!(frames[1], (0x0, END_STREAM, 1, b"\0\0\0\0\0".to_vec()));
    }

    #[tokio::test]
    async fn a_valid_authority_is_kept() {
        let block = loona_hpack::Encoder::new().encode([(&b":authority"[..], &b"localhost:8500"[..])]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &block));
        let out = relayed(input).await;
        let frames = parse(&out[PREFACE.len()..]);
        let fields = loona_hpack::Decoder::new().decode(&frames[0].3).expect("decodes");
        assert_eq!(fields, vec![(b":authority".to_vec(), b"localhost:8500".to_vec())]);
        assert_eq!(frames[0].1, END_HEADERS | END_STREAM);
    }

    #[tokio::test]
    async fn a_client_that_leaves_early_ends_the_servers_input() {
        for sent in [&b""[..], &PREFACE[..10], &PREFACE[..]] {
            let (mut client, accepted) = UnixStream::pair().expect("socket pair");
            let mut connection = relay(accepted);
            client.write_all(sent).await.expect("write");
            drop(client);
            let mut rest = Vec::new();
            let read = tokio::time::timeout(std::time::Duration::from_secs(10), connection.read_to_end(&mut rest));
            assert!(read.await.expect("the server side sees the end").is_ok());
            // NOTE: a partial preface is not forwarded; a whole one is.
            assert_eq!(rest.len(), if sent.len() == PREFACE.len() { PREFACE.len() } else { 0 });
        }
    }

    #[tokio::test]
    async fn a_frame_inside_an_open_header_block_is_refused() {
        let block = loona_hpack::Encoder::new().encode([(&b":path"[..], &b"/x"[..])]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, 0, 1, &block));
        input.extend(frame(0x0, 0, 1, b"data"));
        let (mut client, client_side) = tokio::io::duplex(1 << 16);
        let (mut server_side, _server) = tokio::io::duplex(1 << 16);
        client.write_all(&input).await.expect("write");
        drop(client);
        let error = rewrite_requests(client_side, &mut server_side).await.expect_err("interrupted block");
        assert!(error.to_string().contains("interrupted"), "{error}");
    }

    #[test]
    fn large_blocks_are_split_into_continuations() {
        let pending = PendingHeaders { stream_id: 5, flags: 0, priority: Some([0, 0, 0, 1, 15]), block: Vec::new() };
        let block = vec![0x42u8; MAX_OUT_FRAME * 2];
        let frames = parse(&frames(&pending, &block));
        let kinds: Vec<(u8, u8)> = frames.iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(kinds, vec![(HEADERS, PRIORITY), (CONTINUATION, 0), (CONTINUATION, END_HEADERS)]);
        assert_eq!(frames.iter().map(|f| f.3.len()).sum::<usize>(), block.len() + 5);
    }
}

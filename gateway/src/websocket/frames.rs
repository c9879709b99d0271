//! Frame boundaries on a WebSocket byte stream (RFC 6455 §5.2), found without decoding
//! messages: the relay forwards bytes as they arrive and reads only each frame's header, so a
//! 64 MiB message costs the gateway no more memory than a small one, and payloads are neither
//! unmasked nor re-masked. What the header tells is enough to enforce the route's frame size
//! limit (1009), the masking rules and control-frame rules (1002), to know where a close frame
//! of the gateway's own may be inserted, and to read the close codes the peers exchange.

use std::io::Cursor;

use bytes::{Bytes, BytesMut};
use tungstenite::protocol::{
    CloseFrame,
    frame::{
        Frame, FrameHeader,
        coding::{CloseCode, Control, OpCode},
    },
};

/// Which peer sent the stream being scanned: frames from a client are masked, frames from a
/// server are not (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// The client (its frames are masked).
    Client,
    /// The backend (its frames are not).
    Backend,
}

/// A frame that ends the session: the close code the gateway answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// 1009 (frame over the limit) or 1002 (protocol error).
    pub code: u16,
    /// Why, for the log (never payload bytes).
    pub reason: &'static str,
}

/// 1002: the peer broke the framing rules.
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1009: a frame over the route's `websocket_max_frame_size`.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// 1001: the gateway goes away (shutdown, idle timeout, the session's maximum duration).
pub const GOING_AWAY: u16 = 1001;

/// The longest control-frame payload (§5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Scans one direction of a session, chunk by chunk.
#[derive(Debug)]
pub struct FrameScanner {
    sender: Sender,
    max_payload: u64,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    /// The start of a header cut by the end of the last chunk, held back until it is whole
    /// (so that the peer never holds half a header when the gateway must insert a frame).
    partial: BytesMut,
    /// The payload of a close frame being read (at most 125 bytes), with its mask.
    close: Option<(Option<[u8; 4]>, Vec<u8>)>,
    /// The code of the first close frame this sender sent (1005 when it gave none).
    close_code: Option<u16>,
}

impl FrameScanner {
    /// A scanner of frames from `sender`, refusing payloads over `max_payload` bytes.
    pub fn new(sender: Sender, max_payload: u64) -> Self {
        Self { sender, max_payload, remaining: 0, partial: BytesMut::new(), close: None, close_code: None }
    }

    /// Whether the stream is between two frames (a frame of the gateway's may go next).
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0 && self.partial.is_empty()
    }

    /// The code of the close frame this sender sent, once it did.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// Scans `chunk` and returns the bytes to forward now: whole frames and payload bytes, less
    /// a header cut at the chunk's end (forwarded with the next chunk). On a frame that breaks
    /// the rules, returns what precedes it and the violation; that frame is not forwarded.
    pub fn scan(&mut self, chunk: Bytes) -> Result<Bytes, (Bytes, Violation)> {
        let data = if self.partial.is_empty() {
            chunk
        } else {
            // Rare: a header split across reads. Only then are bytes copied.
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(&chunk);
            joined.freeze()
        };
        let mut pos = 0usize;
        loop {
            if self.remaining > 0 {
                let take = self.remaining.min((data.len() - pos) as u64) as usize;
                if let Some((_, payload)) = &mut self.close {
                    payload.extend_from_slice(&data[pos..pos + take]);
                }
                pos += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.end_of_frame();
                }
            }
            if pos == data.len() {
                return Ok(data);
            }
            let mut cursor = Cursor::new(&data[pos..]);
            let (header, length) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => {
                    self.partial.extend_from_slice(&data[pos..]);
                    return Ok(data.slice(..pos));
                }
                Err(_) => return Err((data.slice(..pos), violation(PROTOCOL_ERROR, "reserved opcode"))),
            };
            if let Err(v) = self.check(&header, length) {
                return Err((data.slice(..pos), v));
            }
            pos += cursor.position() as usize;
            if header.opcode == OpCode::Control(Control::Close) && self.close_code.is_none() {
                self.close = Some((header.mask, Vec::with_capacity(length as usize)));
            }
            self.remaining = length;
            if length == 0 {
                self.end_of_frame();
            }
        }
    }

    /// The rules a frame header must follow before any of it is forwarded.
    fn check(&self, header: &FrameHeader, length: u64) -> Result<(), Violation> {
        match (self.sender, header.mask.is_some()) {
            (Sender::Client, false) => return Err(violation(PROTOCOL_ERROR, "unmasked frame from the client")),
            (Sender::Backend, true) => return Err(violation(PROTOCOL_ERROR, "masked frame from the backend")),
            _ => {}
        }
        if let OpCode::Control(_) = header.opcode {
            if length > MAX_CONTROL_PAYLOAD {
                return Err(violation(PROTOCOL_ERROR, "control frame over 125 bytes"));
            }
            if !header.is_final {
                return Err(violation(PROTOCOL_ERROR, "fragmented control frame"));
            }
        } else if length > self.max_payload {
            return Err(violation(MESSAGE_TOO_BIG, "frame over websocket_max_frame_size"));
        }
        Ok(())
    }

    fn end_of_frame(&mut self) {
        if let Some((mask, mut payload)) = self.close.take() {
            if let Some(mask) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            self.close_code = Some(match payload.get(..2) {
                Some(code) => u16::from_be_bytes([code[0], code[1]]),
                None => 1005, // "no status received"
            });
        }
    }
}

fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// A close frame of the gateway's with `code` and a short `reason`: masked when it goes to the
/// backend (the gateway is its client), not when it goes to the client.
pub fn close_frame(code: u16, reason: &'static str, to: Sender) -> Bytes {
    let mut frame = Frame::close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }));
    if to == Sender::Backend {
        frame.header_mut().mask = Some(rand::random());
    }
    let mut out = Vec::with_capacity(frame.len());
    frame.format(&mut out).expect("writing to a Vec cannot fail");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a peer would send it.
    fn frame(opcode: OpCode, payload: &[u8], final_: bool, mask: Option<[u8; 4]>) -> Vec<u8> {
        let header = FrameHeader { is_final: final_, opcode, mask, ..FrameHeader::default() };
        let mut out = Vec::new();
        header.format(payload.len() as u64, &mut out).unwrap();
        match mask {
            Some(m) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4])),
            None => out.extend_from_slice(payload),
        }
        out
    }

    const TEXT: OpCode = OpCode::Data(tungstenite::protocol::frame::coding::Data::Text);
    const CLOSE: OpCode = OpCode::Control(Control::Close);
    const PING: OpCode = OpCode::Control(Control::Ping);
    const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);

    #[test]
    fn frames_pass_whole_and_byte_by_byte() {
        let mut wire = frame(TEXT, b"hello", true, MASK);
        wire.extend(frame(TEXT, &[7u8; 300], true, MASK));
        wire.extend(frame(CLOSE, &[0x03, 0xe8, b'b', b'y', b'e'], true, MASK));
        let mut whole = FrameScanner::new(Sender::Client, 1024);
        assert_eq!(whole.scan(Bytes::from(wire.clone())).unwrap(), wire);
        assert!(whole.at_boundary());
        assert_eq!(whole.close_code(), Some(1000));

        // One byte at a time: a header is held back until whole, every byte comes out once.
        let mut split = FrameScanner::new(Sender::Client, 1024);
        let mut out = Vec::new();
        for b in &wire {
            out.extend_from_slice(&split.scan(Bytes::copy_from_slice(&[*b])).unwrap());
        }
        assert_eq!(out, wire);
        assert_eq!(split.close_code(), Some(1000));
    }

    #[test]
    fn a_header_cut_at_the_end_is_held_back() {
        let wire = frame(TEXT, &[0u8; 200], true, MASK); // 2 + 2 + 4 header bytes
        let mut s = FrameScanner::new(Sender::Client, 1024);
        assert_eq!(s.scan(Bytes::copy_from_slice(&wire[..3])).unwrap().len(), 0);
        assert!(!s.at_boundary());
        assert_eq!(s.scan(Bytes::copy_from_slice(&wire[3..])).unwrap(), wire);
        assert!(s.at_boundary());
    }

    #[test]
    fn oversized_frames_and_broken_rules_are_refused_before_they_pass() {
        let first = frame(TEXT, b"ok", true, MASK);
        let mut wire = first.clone();
        wire.extend(frame(TEXT, &[0u8; 2000], true, MASK));
        let (before, v) = FrameScanner::new(Sender::Client, 1024).scan(Bytes::from(wire)).unwrap_err();
        assert_eq!((before.as_ref(), v.code), (first.as_slice(), MESSAGE_TOO_BIG));

        let unmasked = frame(TEXT, b"x", true, None);
        let (_, v) = FrameScanner::new(Sender::Client, 1024).scan(Bytes::from(unmasked.clone())).unwrap_err();
        assert_eq!(v.code, PROTOCOL_ERROR);
        assert!(FrameScanner::new(Sender::Backend, 1024).scan(Bytes::from(unmasked)).is_ok());
        let (_, v) =
            FrameScanner::new(Sender::Backend, 1024).scan(Bytes::from(frame(TEXT, b"x", true, MASK))).unwrap_err();
        assert_eq!(v.code, PROTOCOL_ERROR);

        let (_, v) = FrameScanner::new(Sender::Client, 1 << 20)
            .scan(Bytes::from(frame(PING, &[0; 126], true, MASK)))
            .unwrap_err();
        assert_eq!(v.code, PROTOCOL_ERROR);
        let (_, v) =
            FrameScanner::new(Sender::Client, 1 << 20).scan(Bytes::from(frame(PING, b"", false, MASK))).unwrap_err();
        assert_eq!(v.code, PROTOCOL_ERROR);
        let (_, v) =
            FrameScanner::new(Sender::Client, 1 << 20).scan(Bytes::from_static(&[0x83, 0x80, 0, 0, 0, 0])).unwrap_err();
        assert_eq!(v.code, PROTOCOL_ERROR, "reserved opcode 3");
        // A 64-bit length over the limit is refused from its header alone.
        let (_, v) = FrameScanner::new(Sender::Backend, 1 << 20)
            .scan(Bytes::from_static(&[0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))
            .unwrap_err();
        assert_eq!(v.code, MESSAGE_TOO_BIG);
    }

    #[test]
    fn close_frames_of_the_gateway_parse_back() {
        for to in [Sender::Client, Sender::Backend] {
            let bytes = close_frame(GOING_AWAY, "shutting down", to);
            // What the backend receives comes from a client (masked), and the other way round.
            let from = if to == Sender::Backend { Sender::Client } else { Sender::Backend };
            let mut s = FrameScanner::new(from, 0);
            assert_eq!(s.scan(bytes.clone()).unwrap(), bytes);
            assert_eq!(s.close_code(), Some(GOING_AWAY));
        }
        let mut s = FrameScanner::new(Sender::Backend, 0);
        s.scan(Bytes::from(frame(CLOSE, b"", true, None))).unwrap();
        assert_eq!(s.close_code(), Some(1005));
    }
}

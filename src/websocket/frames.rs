//! Counting WebSocket frames as bytes flow (RFC 6455 section 5): frame headers are parsed
//! incrementally, across reads of any size; payloads are skipped, never buffered. Data messages
//! are counted once however they are fragmented, control frames apart, and a close frame's
//! status code is read.
//!
//! Lives here: a pure, byte-at-a-time-safe parser, unit-tested with every framing the RFC
//! allows. Must not: change or hold back a byte (it only watches), or be stricter than a
//! backend: what it cannot parse (an opcode it does not know, a broken frame) makes it stop
//! watching that direction, and the bytes keep flowing.

/// Largest frame header: 2 bytes, 8 of extended length, 4 of masking key.
const MAX_HEADER: usize = 14;

/// What one read of a direction contained (frames and messages whose end was in it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Data frames (text, binary, continuation) whose header was read.
    pub data_frames: u64,
    /// Control frames (close, ping, pong) whose header was read.
    pub control_frames: u64,
    /// Data messages that began (first frame's header read).
    pub messages_started: u64,
    /// Data messages that ended (final frame fully read).
    pub messages: u64,
    /// Payload bytes of data frames.
    pub payload_bytes: u64,
    /// A close frame was read in full; its status code, when it has one.
    pub close: Option<Option<u16>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a frame header (`have` bytes of it so far).
    Header,
    /// Skipping a payload: `remaining` bytes of the current frame.
    Payload,
    /// Stopped: the stream is not WebSocket framing runoff understands.
    Unparsed,
}

/// One direction of one connection.
#[derive(Debug, Clone)]
pub(crate) struct FrameParser {
    state: State,
    header: [u8; MAX_HEADER],
    have: usize,
    /// The current frame: opcode, FIN, masking key, payload bytes left and read.
    opcode: u8,
    fin: bool,
    mask: Option<[u8; 4]>,
    remaining: u64,
    read: u64,
    /// The first two payload bytes of a close frame (its status code), unmasked.
    close_code: [u8; 2],
    /// A fragmented data message is under way (its final frame not yet read).
    in_message: bool,
}

impl Default for FrameParser {
    fn default() -> Self {
        FrameParser {
            state: State::Header,
            header: [0; MAX_HEADER],
            have: 0,
            opcode: 0,
            fin: false,
            mask: None,
            remaining: 0,
            read: 0,
            close_code: [0; 2],
            in_message: false,
        }
    }
}

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

impl FrameParser {
    /// The stream stopped being parseable (counted once as `unparsed` by the caller).
    pub(crate) fn unparsed(&self) -> bool {
        self.state == State::Unparsed
    }

    /// Between two frames: a frame of runoff's own (a close) may be written here without
    /// breaking the stream.
    pub(crate) fn at_boundary(&self) -> bool {
        self.state == State::Header && self.have == 0
    }

    /// Watch the next bytes of this direction.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Seen {
        let mut seen = Seen::default();
        while !bytes.is_empty() {
            match self.state {
                State::Unparsed => break,
                State::Header => {
                    let need = self.header_len();
                    let take = (need - self.have).min(bytes.len());
                    self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                    self.have += take;
                    bytes = &bytes[take..];
                    // The length of the header is known only once its first two bytes are.
                    if self.have == need && self.header_len() == need {
                        self.start_frame(&mut seen);
                    }
                }
                State::Payload => {
                    let take = usize::try_from(self.remaining)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    if self.opcode == CLOSE {
                        for &b in &bytes[..take] {
                            self.close_byte(b);
                        }
                    }
                    if is_data(self.opcode) {
                        seen.payload_bytes += take as u64;
                    }
                    self.remaining -= take as u64;
                    bytes = &bytes[take..];
                    if self.remaining == 0 {
                        self.end_frame(&mut seen);
                    }
                }
            }
        }
        seen
    }

    /// The header's full length, as far as its first two bytes tell (2 before they arrive).
    fn header_len(&self) -> usize {
        if self.have < 2 {
            return 2;
        }
        let len7 = self.header[1] & 0x7F;
        let extended = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    fn start_frame(&mut self, seen: &mut Seen) {
        let h = &self.header;
        let fin = h[0] & 0x80 != 0;
        let opcode = h[0] & 0x0F;
        let len7 = u64::from(h[1] & 0x7F);
        let (len, at) = match len7 {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (n, 2),
        };
        let mask = (h[1] & 0x80 != 0).then(|| [h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let valid = match opcode {
            CONTINUATION => self.in_message,
            TEXT | BINARY => !self.in_message,
            CLOSE | PING | PONG => fin && len <= 125,
            _ => false,
        } && len >> 63 == 0;
        if !valid {
            self.state = State::Unparsed;
            return;
        }
        self.opcode = opcode;
        self.fin = fin;
        self.mask = mask;
        self.remaining = len;
        self.read = 0;
        self.have = 0;
        if is_data(opcode) {
            seen.data_frames += 1;
            if opcode != CONTINUATION {
                seen.messages_started += 1;
                self.in_message = true;
            }
        } else {
            seen.control_frames += 1;
        }
        if len == 0 {
            self.end_frame(seen);
        } else {
            self.state = State::Payload;
        }
    }

    fn close_byte(&mut self, b: u8) {
        if self.read < 2 {
            let i = self.read as usize;
            let key = self.mask.map_or(0, |m| m[i % 4]);
            self.close_code[i] = b ^ key;
        }
        self.read += 1;
    }

    fn end_frame(&mut self, seen: &mut Seen) {
        if is_data(self.opcode) && self.fin {
            seen.messages += 1;
            self.in_message = false;
        }
        if self.opcode == CLOSE {
            seen.close = Some((self.read >= 2).then(|| u16::from_be_bytes(self.close_code)));
        }
        self.state = State::Header;
        self.have = 0;
    }
}

fn is_data(opcode: u8) -> bool {
    matches!(opcode, CONTINUATION | TEXT | BINARY)
}

/// A close frame from runoff itself: `code` and a short reason; masked with `mask` when it
/// goes to a backend (a client's frames must be masked), plain when it goes to a client.
pub(crate) fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    let mut out = vec![0x80 | CLOSE];
    // At most 125 bytes: the 7-bit length.
    let len = payload.len() as u8;
    match mask {
        Some(key) => {
            out.push(0x80 | len);
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => {
            out.push(len);
            out.extend_from_slice(&payload);
        }
    }
    out
}

/// Close codes runoff sends (RFC 6455 section 7.4.1).
pub(crate) const GOING_AWAY: u16 = 1001;
pub(crate) const INTERNAL_ERROR: u16 = 1011;

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a client (masked) or a server (plain) would write it.
    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n <= 0xFFFF => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                out.extend_from_slice(&k);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    /// Feed `bytes` in pieces of `step`, adding up what was seen.
    fn feed_in(p: &mut FrameParser, bytes: &[u8], step: usize) -> Seen {
        let mut total = Seen::default();
        for chunk in bytes.chunks(step) {
            let s = p.feed(chunk);
            total.data_frames += s.data_frames;
            total.control_frames += s.control_frames;
            total.messages_started += s.messages_started;
            total.messages += s.messages;
            total.payload_bytes += s.payload_bytes;
            if s.close.is_some() {
                total.close = s.close;
            }
        }
        total
    }

    const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    #[test]
    fn every_length_form_masked_or_not_in_any_chunking() {
        let mut stream = Vec::new();
        for (len, mask) in [
            (0, None),
            (5, KEY),
            (125, None),
            (126, KEY),
            (65_535, None),
            (65_536, KEY),
            (200_000, None),
        ] {
            stream.extend(frame(true, BINARY, &vec![7u8; len], mask));
        }
        let payload = 5 + 125 + 126 + 65_535 + 65_536 + 200_000;
        for step in [1, 2, 3, 7, 13, 4096, usize::MAX] {
            let mut p = FrameParser::default();
            let s = feed_in(&mut p, &stream, step.min(stream.len()));
            assert_eq!(
                (s.data_frames, s.messages, s.payload_bytes),
                (7, 7, payload),
                "step {step}"
            );
            assert!(p.at_boundary() && !p.unparsed());
        }
    }

    #[test]
    fn a_fragmented_message_counts_once_with_control_frames_between_its_fragments() {
        let mut stream = frame(false, TEXT, b"hel", KEY);
        stream.extend(frame(true, PING, b"p", KEY));
        stream.extend(frame(false, CONTINUATION, b"lo ", KEY));
        stream.extend(frame(true, PONG, b"", KEY));
        stream.extend(frame(true, CONTINUATION, b"world", KEY));
        stream.extend(frame(true, BINARY, b"x", KEY));
        for step in [1, 5, usize::MAX] {
            let mut p = FrameParser::default();
            let s = feed_in(&mut p, &stream, step.min(stream.len()));
            assert_eq!(s.messages, 2, "step {step}");
            assert_eq!(s.messages_started, 2);
            assert_eq!(s.data_frames, 4);
            assert_eq!(s.control_frames, 2);
            assert_eq!(s.payload_bytes, 12);
        }
    }

    #[test]
    fn close_frames_give_their_code() {
        let mut p = FrameParser::default();
        let mut body = 1000u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye");
        let s = feed_in(&mut p, &frame(true, CLOSE, &body, KEY), 1);
        assert_eq!(s.close, Some(Some(1000)));
        assert_eq!(s.control_frames, 1);
        let s = p.feed(&frame(true, CLOSE, b"", None));
        assert_eq!(s.close, Some(None));
        // runoff's own close frames parse as what they say.
        for mask in [None, KEY] {
            let mut p = FrameParser::default();
            let s = p.feed(&close_frame(GOING_AWAY, "runoff is going away", mask));
            assert_eq!(s.close, Some(Some(GOING_AWAY)));
            assert!(p.at_boundary());
        }
    }

    #[test]
    fn what_is_not_websocket_framing_stops_the_watch_not_the_stream() {
        for bad in [
            frame(true, 0x3, b"reserved opcode", None),
            frame(true, CONTINUATION, b"no message under way", None),
            frame(false, PING, b"fragmented control", None),
            frame(true, PING, &[0u8; 126], None),
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        ] {
            let mut p = FrameParser::default();
            let _ = p.feed(&bad);
            assert!(p.unparsed(), "{bad:?}");
            assert_eq!(p.feed(&frame(true, TEXT, b"later", None)), Seen::default());
        }
        // A new message while one is under way.
        let mut p = FrameParser::default();
        let mut s = frame(false, TEXT, b"a", None);
        s.extend(frame(true, TEXT, b"b", None));
        let _ = p.feed(&s);
        assert!(p.unparsed());
    }

    #[test]
    fn the_boundary_is_known_mid_stream() {
        let f = frame(true, TEXT, b"hello", None);
        let mut p = FrameParser::default();
        let _ = p.feed(&f[..1]);
        assert!(!p.at_boundary());
        let _ = p.feed(&f[1..4]);
        assert!(!p.at_boundary());
        let _ = p.feed(&f[4..]);
        assert!(p.at_boundary());
    }
}

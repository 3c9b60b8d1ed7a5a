//! What crosses a request-response stream, exactly: the codecs the event loop runs (CBOR
//! through libp2p's `cbor` codec, with the size limits of PROTOCOL.md §6), and functions
//! that encode and decode the same bytes outside a stream, for the specification's
//! vectors, the tests and the fuzzer.
//!
//! A request is one CBOR value written whole; the requester then closes its side of the
//! stream, and the responder reads to that end (at most the limit) before decoding. The
//! answer comes back the same way.

use std::io;

use aiguillage_wire::MAX_ENVELOPE_BYTES;
use futures::executor::block_on;
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use libp2p::request_response::cbor::codec::Codec as CborCodec;

use crate::{Ack, Frame, SyncAnswer, SyncAsk, Verdict};

/// The most a request on the referral or overflow protocol may carry: one envelope and
/// its CBOR byte-string header.
pub const MAX_REQUEST: u64 = MAX_ENVELOPE_BYTES as u64 + 16;
/// The most an answer to such a request may carry.
pub const MAX_ANSWER: u64 = 4096;
/// The most a sync request may carry (it is the empty map).
pub const MAX_SYNC_REQUEST: u64 = 64;
/// A directory answer: up to 2,048 adverts of at most 16 KiB plus a roster.
pub const MAX_SYNC_ANSWER: u64 = 40 * 1024 * 1024;

pub(crate) type DirectCodec = CborCodec<Frame, Ack>;
pub(crate) type SyncCodec = CborCodec<SyncAsk, SyncAnswer>;

pub(crate) fn direct_codec() -> DirectCodec {
    CborCodec::default()
        .set_request_size_maximum(MAX_REQUEST)
        .set_response_size_maximum(MAX_ANSWER)
}

pub(crate) fn sync_codec() -> SyncCodec {
    CborCodec::default()
        .set_request_size_maximum(MAX_SYNC_REQUEST)
        .set_response_size_maximum(MAX_SYNC_ANSWER)
}

fn protocol() -> StreamProtocol {
    StreamProtocol::new(aiguillage_wire::PROTOCOL_REFERRAL)
}

/// The bytes of a request carrying `envelope` (a CBOR byte string).
pub fn encode_request(envelope: &[u8]) -> Vec<u8> {
    let mut out = futures::io::Cursor::new(Vec::new());
    block_on(direct_codec().write_request(&protocol(), &mut out, Frame(envelope.to_vec())))
        .expect("writing to memory cannot fail");
    out.into_inner()
}

/// The envelope bytes a request stream carried, as the responder reads them.
pub fn decode_request(stream: &[u8]) -> io::Result<Vec<u8>> {
    let mut input = futures::io::Cursor::new(stream);
    block_on(direct_codec().read_request(&protocol(), &mut input)).map(|f| f.0)
}

/// The bytes of an answer.
pub fn encode_answer(verdict: &Verdict) -> Vec<u8> {
    let mut out = futures::io::Cursor::new(Vec::new());
    block_on(direct_codec().write_response(&protocol(), &mut out, verdict.clone().into()))
        .expect("writing to memory cannot fail");
    out.into_inner()
}

/// The verdict an answer stream carried, as the requester reads it.
pub fn decode_answer(stream: &[u8]) -> io::Result<Verdict> {
    let mut input = futures::io::Cursor::new(stream);
    let ack = block_on(direct_codec().read_response(&protocol(), &mut input))?;
    Ok(if ack.accepted {
        Verdict::Admitted
    } else {
        Verdict::Refused {
            reason: ack.reason,
            retry_after_ms: ack.retry_after_ms,
        }
    })
}

/// The bytes of a sync request.
pub fn encode_sync_request() -> Vec<u8> {
    let mut out = futures::io::Cursor::new(Vec::new());
    block_on(sync_codec().write_request(&protocol(), &mut out, SyncAsk {}))
        .expect("writing to memory cannot fail");
    out.into_inner()
}

/// The bytes of a sync answer carrying `envelopes`.
pub fn encode_sync_answer(envelopes: &[Vec<u8>]) -> Vec<u8> {
    let answer = SyncAnswer {
        envelopes: envelopes.iter().cloned().map(Frame).collect(),
    };
    let mut out = futures::io::Cursor::new(Vec::new());
    block_on(sync_codec().write_response(&protocol(), &mut out, answer))
        .expect("writing to memory cannot fail");
    out.into_inner()
}

/// The envelopes a sync answer stream carried, as the requester reads them.
pub fn decode_sync_answer(stream: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    let mut input = futures::io::Cursor::new(stream);
    let answer = block_on(sync_codec().read_response(&protocol(), &mut input))?;
    Ok(answer.envelopes.into_iter().map(|f| f.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = include_str!("../../../docs/PROTOCOL.md");

    fn doc_vector(name: &str) -> Vec<u8> {
        let fence = format!("```hex vector={name}");
        let start = DOC
            .lines()
            .position(|l| l.trim() == fence)
            .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no vector {name}"));
        DOC.lines()
            .skip(start + 1)
            .take_while(|l| !l.starts_with("```"))
            .flat_map(|l| l.split_whitespace())
            .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|e| panic!("{name}: {b}: {e}")))
            .collect()
    }

    #[test]
    fn the_documented_frames_are_what_the_codecs_write_and_read() {
        let accept = doc_vector("accept-envelope");
        let request = encode_request(&accept);
        assert_eq!(request, doc_vector("request-accept"));
        assert_eq!(decode_request(&request).unwrap(), accept);
        for (name, verdict) in [
            ("answer-admitted", Verdict::Admitted),
            ("answer-refused", Verdict::refused("bad_signature")),
            (
                "answer-rate-limited",
                Verdict::Refused {
                    reason: "rate_limited".into(),
                    retry_after_ms: Some(250),
                },
            ),
        ] {
            let bytes = encode_answer(&verdict);
            assert_eq!(bytes, doc_vector(name), "{name}");
            assert_eq!(decode_answer(&bytes).unwrap(), verdict, "{name}");
        }
        assert_eq!(encode_sync_request(), doc_vector("sync-request"));
        let advert = doc_vector("advert-envelope");
        let answer = encode_sync_answer(std::slice::from_ref(&advert));
        assert_eq!(answer, doc_vector("sync-answer"));
        assert_eq!(decode_sync_answer(&answer).unwrap(), vec![advert]);
    }

    #[test]
    fn a_request_past_the_limit_is_cut_off_and_refused() {
        let big = vec![0u8; MAX_REQUEST as usize + 100];
        let request = encode_request(&big);
        assert!(decode_request(&request).is_err());
        assert!(decode_request(&[0x58]).is_err(), "a truncated header");
        assert!(decode_request(&[]).is_err(), "nothing at all");
    }
}

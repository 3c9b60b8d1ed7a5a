//! The request-response framing, read as a node reads it: arbitrary stream bytes as a
//! request, as an answer and as a sync answer, through the codecs the node runs (libp2p's
//! CBOR codec with the size limits of PROTOCOL.md §6). Any panic is a bug; so is an answer
//! that does not re-encode to what was read.
#![no_main]

use aiguillage_net::framing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = framing::decode_request(data) {
        // What a request carried is what the same request re-encodes.
        assert_eq!(framing::decode_request(&framing::encode_request(&envelope)).unwrap(), envelope);
    }
    if let Ok(verdict) = framing::decode_answer(data) {
        assert_eq!(framing::decode_answer(&framing::encode_answer(&verdict)).unwrap(), verdict);
    }
    if let Ok(envelopes) = framing::decode_sync_answer(data) {
        let again = framing::decode_sync_answer(&framing::encode_sync_answer(&envelopes)).unwrap();
        assert_eq!(again, envelopes);
    }
});

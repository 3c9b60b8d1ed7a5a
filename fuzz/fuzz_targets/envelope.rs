//! Peer bytes → envelope → every message kind. Any panic is a bug: decoding must only ever
//! return errors.
#![no_main]

use aiguillage_wire::*;
use libfuzzer_sys::fuzz_target;

fn body<M: Message>(envelope: &Envelope) {
    let _ = envelope.decode_payload::<M>();
}

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::from_bytes(data) else {
        return;
    };
    let _ = envelope.verify(Timestamp(1_780_000_000_000));
    // Decode the payload as every kind, not only the one it claims, so that each schema
    // sees every input.
    body::<Advert>(&envelope);
    body::<Roster>(&envelope);
    body::<Offer>(&envelope);
    body::<Accept>(&envelope);
    body::<Decline>(&envelope);
    body::<Withdraw>(&envelope);
    body::<HandOver>(&envelope);
    body::<Progress>(&envelope);
    body::<CallForBids>(&envelope);
    body::<Bid>(&envelope);
    body::<Reserve>(&envelope);
    body::<Reserved>(&envelope);
    body::<Confirm>(&envelope);
    body::<Release>(&envelope);
    body::<Heartbeat>(&envelope);
    body::<JobStatus>(&envelope);
    body::<UsageReceipt>(&envelope);
    body::<ReceiptAck>(&envelope);
    body::<OutputRequest>(&envelope);
    body::<JobOutput>(&envelope);
    // Round trip: what decoded re-encodes to the same bytes.
    assert_eq!(envelope.to_bytes(), data);
});

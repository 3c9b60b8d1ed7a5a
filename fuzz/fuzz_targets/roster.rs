//! Bytes offered as a signed roster: verified against the pinned authority key, then
//! checked as a successor of the installed one, as a node does with a roster from gossip.
//! Any panic is a bug.
#![no_main]

use aiguillage_wire::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let authority = PublicKey::of(&SigningKey::from_bytes(&[99; 32]));
    let Ok(envelope) = Envelope::from_bytes(data) else {
        return;
    };
    let now = Timestamp(1_780_000_000_000);
    if let Ok(verified) = Roster::verify_signed(envelope.clone(), &authority, now) {
        let current = Roster {
            federation: verified.message.federation.clone(),
            serial: 1,
            members: vec![],
        };
        let _ = current.check_successor(&verified.message);
        for m in &verified.message.members {
            let _ = verified.message.authorise(&envelope, now);
            assert!(verified.message.member(&m.id).is_some());
        }
    }
    // Whatever the signature says, the payload must decode or fail cleanly.
    let _ = envelope.decode_payload::<Roster>();
});

//! The one door for peer bytes: arbitrary bytes admitted on every channel (both gossip
//! topics, both request protocols, sync) at a member with a roster, and what is admitted
//! handed to the core. The first byte picks a channel and a clock; the rest are the
//! message. Seeds include a valid signed message of every kind (fuzz/corpus/admission),
//! so mutations reach the checks past the signature. Any panic is a bug; so is a message
//! admitted on a channel that does not carry its kind.
#![no_main]

use std::sync::OnceLock;

use aiguillage_core::{Core, CoreConfig, Input, State, profile::Profile};
use aiguillage_wire::*;
use libfuzzer_sys::fuzz_target;

const T0: u64 = 1_780_000_000_000;

struct Fixed {
    profile: Profile,
    key: SigningKey,
    authority: SigningKey,
    roster: Envelope,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let profile = Profile::from_toml(
            include_str!("../../config/factories/es-1healthai.toml"),
            "es-1healthai",
        )
        .unwrap();
        // The seeds are signed with the key of the protocol's test vectors (bytes 0..31),
        // as lu-l-aif; es-1healthai receives them.
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = i as u8;
        }
        let vectors = SigningKey::from_bytes(&seed);
        let key = SigningKey::from_bytes(&[7; 32]);
        let authority = vectors.clone();
        let entry = |id: &str, key: &SigningKey, cc: &str| RosterEntry {
            id: MemberId::new(id).unwrap(),
            key: PublicKey::of(key),
            role: Role::Factory,
            country: CountryCode::new(cc).unwrap(),
            linked_factories: vec![],
            valid_from: Timestamp(0),
            valid_until: Timestamp(T0 + 400 * 86_400_000),
        };
        let roster = Roster {
            federation: "eurohpc-ai-factories".into(),
            serial: 1,
            members: vec![
                entry("lu-l-aif", &vectors, "LU"),
                entry("it-it4lia", &SigningKey::from_bytes(&[8; 32]), "IT"),
                entry("es-1healthai", &key, "ES"),
            ],
        };
        let roster = Envelope::seal(
            &roster,
            &MemberId::new(AUTHORITY_ID).unwrap(),
            &authority,
            Timestamp(T0),
            Timestamp(T0 + 300 * 86_400_000),
        )
        .unwrap();
        Fixed {
            profile,
            key,
            authority,
            roster,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let f = fixed();
    let mut core = Core::new(
        f.profile.clone(),
        f.key.clone(),
        PublicKey::of(&f.authority),
        CoreConfig::default(),
        State::default(),
    );
    core.install_roster(f.roster.clone(), Timestamp(T0)).unwrap();
    let channel = Channel::ALL[usize::from(pick) % Channel::ALL.len()];
    let now = Timestamp(T0 + u64::from(pick / 5) * 10_000);
    if let Ok(admitted) = core.admit_bytes(now, channel, bytes) {
        assert!(
            channel.allows(admitted.envelope.kind),
            "{} admitted on {channel}",
            admitted.envelope.kind
        );
        core.handle(now, Input::Received(admitted));
    }
});

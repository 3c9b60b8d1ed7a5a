//! What a receiver refuses, and the error it names for each.

mod common;

use std::collections::BTreeMap;

use aiguillage_wire::*;
use proptest::prelude::*;

const T0: Timestamp = Timestamp(1_780_000_000_000);
const LIFE: u64 = 600_000;

fn lu() -> MemberId {
    MemberId::new("lu-l-aif").unwrap()
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9u8; 32])
}

fn advert() -> Advert {
    Advert {
        member: lu(),
        seq: 4,
        role: Role::Factory,
        name: "Luxembourg AI Factory".into(),
        country: CountryCode::new("LU").unwrap(),
        sectors: BTreeMap::from([
            (Sector::FinanceInsurance, SectorLevel::Priority),
            (Sector::Health, SectorLevel::Excluded),
        ]),
        other_sectors: SectorLevel::Accepted,
        services: Service::ALL.to_vec(),
        languages: vec![Language::new("fr").unwrap()],
        countries_served: vec![CountryCode::new("LU").unwrap()],
        datasets: vec![],
        gpu: GpuCapacity {
            total: Some(2100),
            free: Some(300),
            ..GpuCapacity::default()
        },
        referral_intake: Some(5),
    }
}

fn sealed() -> Vec<u8> {
    Envelope::seal(&advert(), &lu(), &key(), T0, T0.saturating_add_ms(LIFE))
        .unwrap()
        .to_bytes()
}

#[test]
fn a_good_advert_opens() {
    let opened = open::<Advert>(&sealed(), T0).unwrap();
    assert_eq!(opened.message, advert());
}

#[test]
fn every_single_flipped_byte_is_refused() {
    let bytes = sealed();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= bit;
            assert!(
                open::<Advert>(&bad, T0).is_err(),
                "flipping bit {bit:#x} of byte {i} was accepted"
            );
        }
    }
}

proptest! {
    #[test]
    fn any_byte_replaced_anywhere_is_refused(i in any::<prop::sample::Index>(), b in any::<u8>()) {
        let mut bad = sealed();
        let i = i.index(bad.len());
        prop_assume!(bad[i] != b);
        bad[i] = b;
        prop_assert!(open::<Advert>(&bad, T0).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Envelope::from_bytes(&bytes);
        let _ = open::<Offer>(&bytes, T0);
    }
}

#[test]
fn a_signature_for_one_kind_does_not_verify_as_another() {
    let accept = Accept {
        referral: ReferralId::new("it-it4lia/1").unwrap(),
        attempt: 1,
    };
    let mut envelope =
        Envelope::seal(&accept, &lu(), &key(), T0, T0.saturating_add_ms(LIFE)).unwrap();
    // Same payload bytes and signature, relabelled as a withdraw: the schemas coincide on
    // their first fields, so only the signed kind stops the replay.
    envelope.kind = MessageKind::Withdraw;
    let err = Envelope::from_bytes(&envelope.to_bytes())
        .unwrap()
        .verify(T0)
        .unwrap_err();
    assert_eq!(err, WireError::BadSignature);

    // Opening an accept as an advert names the mismatch.
    let bytes = Envelope::seal(&accept, &lu(), &key(), T0, T0.saturating_add_ms(LIFE))
        .unwrap()
        .to_bytes();
    assert_eq!(
        open::<Advert>(&bytes, T0).unwrap_err(),
        WireError::WrongKind {
            expected: MessageKind::Advert,
            found: MessageKind::Accept
        }
    );
}

#[test]
fn truncation_and_trailing_bytes_are_named() {
    let bytes = sealed();
    assert_eq!(
        Envelope::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err(),
        WireError::Truncated
    );
    let mut long = bytes.clone();
    long.extend_from_slice(&[0, 0]);
    assert_eq!(
        Envelope::from_bytes(&long).unwrap_err(),
        WireError::TrailingBytes { extra: 2 }
    );
}

#[test]
fn an_unknown_version_is_named_before_anything_else() {
    let mut bytes = sealed();
    assert_eq!(bytes[0], 0x88, "an envelope is an 8-item array");
    assert_eq!(bytes[1], PROTOCOL_VERSION);
    bytes[1] = 2;
    assert_eq!(
        Envelope::from_bytes(&bytes).unwrap_err(),
        WireError::UnknownVersion(2)
    );
    // A future version with a different layout is still reported as a version problem.
    let future = [0x82, 0x07, 0x00];
    assert_eq!(
        Envelope::from_bytes(&future).unwrap_err(),
        WireError::UnknownVersion(7)
    );
}

#[test]
fn an_unknown_kind_is_named() {
    let mut bytes = sealed();
    assert_eq!(bytes[2], MessageKind::Advert.code());
    bytes[2] = 0x05;
    assert_eq!(
        Envelope::from_bytes(&bytes).unwrap_err(),
        WireError::UnknownKind(5)
    );
}

#[test]
fn oversize_payloads_are_refused_at_both_ends() {
    let mut big = advert();
    big.name = "x".repeat(20 * 1024);
    let err = Envelope::seal(&big, &lu(), &key(), T0, T0.saturating_add_ms(LIFE)).unwrap_err();
    assert!(
        matches!(err, WireError::TooLarge { limit: 16384, .. }),
        "{err}"
    );

    // A peer that builds the envelope by hand still gets refused on receipt.
    let mut envelope =
        Envelope::seal(&advert(), &lu(), &key(), T0, T0.saturating_add_ms(LIFE)).unwrap();
    envelope.payload = vec![0x60; 17 * 1024];
    let err = Envelope::from_bytes(&envelope.to_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TooLarge {
                size: 17408,
                limit: 16384
            }
        ),
        "{err}"
    );

    let huge = vec![0u8; MAX_ENVELOPE_BYTES + 1];
    assert!(matches!(
        Envelope::from_bytes(&huge).unwrap_err(),
        WireError::TooLarge { .. }
    ));
}

/// Seals arbitrary payload bytes as if they were an advert, with a valid signature, so that
/// only the payload decoder can refuse them.
fn sealed_raw(payload: Vec<u8>) -> Vec<u8> {
    sealed_as(MessageKind::Advert, payload)
}

#[test]
fn deep_nesting_in_a_signed_payload_is_refused() {
    let mut payload = vec![0x81; MAX_DEPTH + 1];
    payload.push(0x00);
    let err = open::<Advert>(&sealed_raw(payload), T0).unwrap_err();
    assert_eq!(err, WireError::TooDeep { limit: MAX_DEPTH });
}

#[test]
fn long_collections_and_trailing_payload_bytes_are_refused() {
    // An array header claiming 300 items in an advert (limit 256).
    let mut payload = vec![0x99, 0x01, 0x2c];
    payload.extend(std::iter::repeat_n(0x00, 300));
    assert_eq!(
        open::<Advert>(&sealed_raw(payload), T0).unwrap_err(),
        WireError::TooManyItems {
            len: 300,
            limit: 256
        }
    );
    let mut payload = serde_cbor_free_copy_of_advert();
    payload.push(0x00);
    assert_eq!(
        open::<Advert>(&sealed_raw(payload), T0).unwrap_err(),
        WireError::TrailingBytes { extra: 1 }
    );
}

fn serde_cbor_free_copy_of_advert() -> Vec<u8> {
    Envelope::seal(&advert(), &lu(), &key(), T0, T0.saturating_add_ms(LIFE))
        .unwrap()
        .payload
}

#[test]
fn a_payload_of_the_wrong_shape_is_malformed() {
    let err = open::<Advert>(&sealed_raw(vec![0x01]), T0).unwrap_err();
    assert!(matches!(err, WireError::Malformed(_)), "{err}");
}

#[test]
fn time_is_checked_against_the_given_clock() {
    let bytes = sealed();
    let expires = T0.saturating_add_ms(LIFE);
    assert_eq!(
        open::<Advert>(&bytes, expires).unwrap_err(),
        WireError::Expired {
            expires_at: expires,
            now: expires
        }
    );
    let early = T0.saturating_sub_ms(MAX_CLOCK_SKEW_MS + 1);
    assert_eq!(
        open::<Advert>(&bytes, early).unwrap_err(),
        WireError::NotYetValid {
            issued_at: T0,
            now: early
        }
    );
    // Within the allowed skew is fine.
    assert!(open::<Advert>(&bytes, T0.saturating_sub_ms(MAX_CLOCK_SKEW_MS)).is_ok());
}

#[test]
fn lifetimes_beyond_the_kind_limit_are_refused() {
    let too_long = T0.saturating_add_ms(MessageKind::Advert.max_lifetime_ms() + 1);
    assert!(matches!(
        Envelope::seal(&advert(), &lu(), &key(), T0, too_long).unwrap_err(),
        WireError::BadLifetime(_)
    ));
    assert!(matches!(
        Envelope::seal(&advert(), &lu(), &key(), T0, T0).unwrap_err(),
        WireError::BadLifetime(_)
    ));
}

#[test]
fn an_advert_signed_for_another_member_is_refused() {
    let other = MemberId::new("it-it4lia").unwrap();
    let err =
        Envelope::seal(&advert(), &other, &key(), T0, T0.saturating_add_ms(LIFE)).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::SignerMismatch {
                field: "member",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_referral_id_minted_by_someone_else_is_refused() {
    let offer = Offer {
        referral: ReferralId::new("it-it4lia/3").unwrap(),
        attempt: 1,
        target: MemberId::new("de-jaif").unwrap(),
        card: ProjectCard {
            project: ProjectId::new("p/1").unwrap(),
            sector: Sector::Health,
            secondary_sectors: vec![],
            country: CountryCode::new("LU").unwrap(),
            company_size: CompanySize::Small,
            stage: Service::Assessment,
            services_needed: vec![],
            gpu_hours: 0,
            datasets_wanted: vec![],
            languages: vec![],
            consent: ConsentScope::default(),
        },
        respond_by: T0,
        rationale: String::new(),
    };
    let err = Envelope::seal(&offer, &lu(), &key(), T0, T0.saturating_add_ms(LIFE)).unwrap_err();
    assert!(matches!(err, WireError::SignerMismatch { .. }), "{err}");
}

#[test]
fn a_bad_id_inside_a_signed_payload_is_refused_by_name() {
    let mut payload = serde_cbor_free_copy_of_advert();
    // The member id "lu-l-aif" appears in the payload; make it upper case.
    let at = payload.windows(8).position(|w| w == b"lu-l-aif").unwrap();
    payload[at] = b'L';
    let err = open::<Advert>(&sealed_raw(payload), T0).unwrap_err();
    assert!(
        matches!(err, WireError::Malformed(ref m) if m.contains("member id")),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_ignored_and_missing_required_fields_are_refused() {
    let accept = Accept {
        referral: ReferralId::new("it-it4lia/1").unwrap(),
        attempt: 2,
    };
    let payload = Envelope::seal(&accept, &lu(), &key(), T0, T0.saturating_add_ms(LIFE))
        .unwrap()
        .payload;
    assert_eq!(payload[0], 0xa2, "a map of two entries");
    let resign = |payload: Vec<u8>| sealed_as(MessageKind::Accept, payload);
    // A key added by a later minor revision ("zz": 1) is ignored.
    let mut extended = payload.clone();
    extended[0] = 0xa3;
    extended.extend_from_slice(&[0x62, b'z', b'z', 0x01]);
    assert_eq!(
        open::<Accept>(&resign(extended), T0).unwrap().message,
        accept
    );
    // Without "attempt" the body is refused, naming the field.
    let mut cut = payload[..payload.len() - 9].to_vec();
    cut[0] = 0xa1;
    let err = open::<Accept>(&resign(cut), T0).unwrap_err();
    assert!(
        matches!(err, WireError::Malformed(ref m) if m.contains("attempt")),
        "{err}"
    );
}

#[test]
fn an_absent_optional_field_reads_as_unknown() {
    let mut ad = advert();
    ad.referral_intake = None;
    let payload = Envelope::seal(&ad, &lu(), &key(), T0, T0.saturating_add_ms(LIFE))
        .unwrap()
        .payload;
    let tail = b"\x6freferral_intake\xf6";
    assert!(payload.ends_with(tail));
    let mut cut = payload[..payload.len() - tail.len()].to_vec();
    cut[0] -= 1;
    let opened = open::<Advert>(&sealed_raw(cut), T0).unwrap();
    assert_eq!(opened.message.referral_intake, None);
    assert_eq!(opened.message.gpu.total, Some(2100));
}

#[test]
fn an_envelope_has_exactly_one_byte_form() {
    let bytes = sealed();
    // Re-encode the version (1) in two bytes: same values, different bytes.
    let mut padded = vec![bytes[0], 0x18, 0x01];
    padded.extend_from_slice(&bytes[2..]);
    let err = Envelope::from_bytes(&padded).unwrap_err();
    assert!(
        matches!(err, WireError::Malformed(ref m) if m.contains("shortest")),
        "{err}"
    );
}

#[test]
fn a_text_string_where_bytes_are_due_is_refused() {
    // Found by fuzzing: a payload sent as a text string decoded to the same bytes as the
    // byte string it stood for, giving one message two byte forms.
    let mut envelope =
        Envelope::seal(&advert(), &lu(), &key(), T0, T0.saturating_add_ms(LIFE)).unwrap();
    envelope.payload = b"abc".to_vec();
    let bytes = envelope.to_bytes();
    let at = bytes.len() - 64 - 2 - 3 - 1;
    assert_eq!(
        &bytes[at..at + 4],
        &[0x43, b'a', b'b', b'c'],
        "payload as bytes(3)"
    );
    assert!(Envelope::from_bytes(&bytes).is_ok());
    let mut text = bytes.clone();
    text[at] = 0x63;
    let err = Envelope::from_bytes(&text).unwrap_err();
    assert!(
        matches!(err, WireError::Malformed(ref m) if m.contains("major types")),
        "{err}"
    );
}

/// Signs `payload` as a message of `kind`, so that only the body decoder can refuse it.
fn sealed_as(kind: MessageKind, payload: Vec<u8>) -> Vec<u8> {
    Envelope::seal_unchecked(kind, &lu(), &key(), T0, T0.saturating_add_ms(LIFE), payload)
        .to_bytes()
}

fn open_as_every_kind(payload: &[u8]) {
    fn one<M: Message>(payload: &[u8]) {
        let _ = open::<M>(&sealed_as(M::KIND, payload.to_vec()), T0);
    }
    one::<Advert>(payload);
    one::<Roster>(payload);
    one::<Offer>(payload);
    one::<Accept>(payload);
    one::<Decline>(payload);
    one::<Withdraw>(payload);
    one::<HandOver>(payload);
    one::<Progress>(payload);
    one::<CallForBids>(payload);
    one::<Bid>(payload);
    one::<Reserve>(payload);
    one::<Reserved>(payload);
    one::<Confirm>(payload);
    one::<Release>(payload);
    one::<Heartbeat>(payload);
    one::<JobStatus>(payload);
    one::<UsageReceipt>(payload);
    one::<ReceiptAck>(payload);
    one::<OutputRequest>(payload);
    one::<JobOutput>(payload);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Validly signed bodies of arbitrary bytes reach every body decoder without a panic.
    #[test]
    fn every_body_decoder_survives_arbitrary_signed_bytes(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        open_as_every_kind(&payload);
    }

    /// The same, starting from a real body with a few bytes changed, which reaches deeper.
    #[test]
    fn every_body_decoder_survives_mutated_real_bodies(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut payload = serde_cbor_free_copy_of_advert();
        for (i, b) in edits {
            let i = i.index(payload.len());
            payload[i] = b;
        }
        open_as_every_kind(&payload);
    }
}

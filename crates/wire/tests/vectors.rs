//! The test vectors printed in docs/PROTOCOL.md are what this implementation produces, and
//! what it accepts.

#[path = "fixtures/vectors.rs"]
mod vector_messages;

use aiguillage_wire::*;

const DOC: &str = include_str!("../../../docs/PROTOCOL.md");

fn doc_vector(name: &str) -> Vec<u8> {
    let fence = format!("```hex vector={name}");
    let start = DOC
        .lines()
        .position(|l| l.trim() == fence)
        .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no vector {name}"));
    let hex: String = DOC
        .lines()
        .skip(start + 1)
        .take_while(|l| !l.starts_with("```"))
        .flat_map(|l| l.split_whitespace())
        .collect();
    hex::decode(&hex).unwrap_or_else(|e| panic!("vector {name} is not hex: {e}"))
}

#[test]
fn the_documented_vectors_match_the_implementation() {
    for (name, bytes) in vector_messages::all() {
        assert_eq!(
            doc_vector(name),
            bytes,
            "vector {name} differs from docs/PROTOCOL.md"
        );
    }
}

#[test]
fn the_documented_envelopes_open() {
    let now = vector_messages::ISSUED_AT;
    let accept = open::<Accept>(&doc_vector("accept-envelope"), now).unwrap();
    assert_eq!(accept.message, vector_messages::accept());
    let advert = open::<Advert>(&doc_vector("advert-envelope"), now).unwrap();
    assert_eq!(advert.message, vector_messages::advert());
    assert_eq!(advert.envelope.key.0.to_vec(), doc_vector("public-key"));
}

/// The table of kinds, limits and lifetimes in §4 is the one the code enforces.
#[test]
fn the_documented_kinds_and_limits_match_the_implementation() {
    let section = DOC
        .split("## 4. Kinds and limits")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/PROTOCOL.md has section 4");
    let rows: Vec<Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains('`'))
        .map(|l| {
            l.split('|')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), MessageKind::ALL.len(), "one row per kind");
    for row in rows {
        let code: u64 = row[0].parse().unwrap();
        let kind =
            MessageKind::from_code(code).unwrap_or_else(|| panic!("code {code} is not a kind"));
        assert_eq!(row[1], format!("`{}`", kind.name()), "name of code {code}");
        let kib: usize = row[2].trim_end_matches(" KiB").parse().unwrap();
        assert_eq!(kib * 1024, kind.limits().max_bytes, "size of {kind}");
        let items: u64 = row[3].parse().unwrap();
        assert_eq!(items, kind.limits().max_items, "items of {kind}");
        let days: u64 = row[4].split(' ').next().unwrap().parse().unwrap();
        assert_eq!(
            days * 86_400_000,
            kind.max_lifetime_ms(),
            "lifetime of {kind}"
        );
    }
}

/// One message of every kind is in the document, and opens as its kind.
#[test]
fn a_documented_envelope_of_every_kind_opens() {
    let now = vector_messages::ISSUED_AT;
    let mut seen = std::collections::BTreeSet::new();
    for name in ["accept-envelope", "advert-envelope"]
        .into_iter()
        .chain(vector_messages::every_kind().into_iter().map(|(n, _)| n))
    {
        let envelope = Envelope::from_bytes(&doc_vector(name)).unwrap();
        envelope
            .verify(now)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        seen.insert(envelope.kind);
    }
    assert_eq!(seen.len(), MessageKind::ALL.len(), "{seen:?}");
}

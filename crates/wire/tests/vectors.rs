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

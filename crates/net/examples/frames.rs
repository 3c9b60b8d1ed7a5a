//! Prints the framing vectors of docs/PROTOCOL.md §6, built by the codecs the node runs
//! around the envelopes of §8. The framing tests check the document against the same bytes.

use aiguillage_net::Verdict;
use aiguillage_net::framing::{
    encode_answer, encode_request, encode_sync_answer, encode_sync_request,
};

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
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect()
}

fn print(name: &str, bytes: &[u8]) {
    println!("```hex vector={name}");
    for chunk in bytes.chunks(32) {
        let line: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        println!("{}", line.join(" "));
    }
    println!("```");
}

fn main() {
    print(
        "request-accept",
        &encode_request(&doc_vector("accept-envelope")),
    );
    print("answer-admitted", &encode_answer(&Verdict::Admitted));
    print(
        "answer-refused",
        &encode_answer(&Verdict::refused("bad_signature")),
    );
    print(
        "answer-rate-limited",
        &encode_answer(&Verdict::Refused {
            reason: "rate_limited".into(),
            retry_after_ms: Some(250),
        }),
    );
    print("sync-request", &encode_sync_request());
    print(
        "sync-answer",
        &encode_sync_answer(&[doc_vector("advert-envelope")]),
    );
}

//! Prints the test vectors of docs/PROTOCOL.md. The `vectors` test checks the document
//! against the same messages, so the two never drift apart.

#[path = "../tests/fixtures/vectors.rs"]
mod vector_messages;

fn main() {
    for (name, bytes) in vector_messages::all() {
        println!("```hex vector={name}");
        for chunk in bytes.chunks(32) {
            println!("{}", hex_spaced(chunk));
        }
        println!("```");
    }
}

fn hex_spaced(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

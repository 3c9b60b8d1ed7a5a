//! The one module that touches the CBOR library. Moving off `serde_cbor` (unmaintained,
//! RUSTSEC-2021-0127) to another serde CBOR codec is a change to this file alone; the test
//! vectors in docs/PROTOCOL.md guard the bytes.
//!
//! Peer bytes are first walked by [`check_structure`], which enforces the limits of the
//! message kind (size, nesting depth, collection lengths, definite lengths only, no trailing
//! bytes) without allocating, so that the serde decoder only ever sees bounded input.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::WireError;

/// Structural limits applied to untrusted CBOR before it is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded size in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and maps (the top-level item is depth 1).
    pub max_depth: usize,
    /// Most items in any one array, or entries in any one map.
    pub max_items: u64,
    /// Require every length and integer in its shortest encoding, so that a value has
    /// exactly one byte form.
    pub shortest_form: bool,
    /// Require every map key to be a text string, each at most once per map.
    pub text_keys: bool,
}

/// Encodes a value for local storage (the node's own database).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    to_vec(value)
}

/// Decodes a value this node stored itself. Not for peer bytes: those go through the
/// limits of their message kind.
pub fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    serde_cbor::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

pub(crate) fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own types to a Vec cannot fail: no map has non-string keys and no
    // writer error is possible. A failure here is a bug in a type definition.
    serde_cbor::to_vec(value).expect("message types always serialise to CBOR")
}

/// Checks a message body: the kind's structural limits, a map at the top, and text keys
/// that appear once per map.
pub(crate) fn check_payload(bytes: &[u8], limits: Limits) -> Result<(), WireError> {
    let limits = Limits {
        text_keys: true,
        ..limits
    };
    check_structure(bytes, limits)?;
    match bytes.first() {
        Some(b) if b >> 5 == 5 => Ok(()),
        _ => Err(WireError::Malformed(
            "a message body must be a CBOR map".into(),
        )),
    }
}

/// Checks a message body with [`check_payload`], then decodes it.
pub(crate) fn from_payload<T: DeserializeOwned>(
    bytes: &[u8],
    limits: Limits,
) -> Result<T, WireError> {
    check_payload(bytes, limits)?;
    serde_cbor::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

pub(crate) fn from_slice<T: DeserializeOwned>(
    bytes: &[u8],
    limits: Limits,
) -> Result<T, WireError> {
    check_structure(bytes, limits)?;
    serde_cbor::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Reads the first item of a top-level array if it is an unsigned integer, without looking
/// at anything after it: how a receiver learns an envelope's version before its layout.
pub fn peek_first_uint(bytes: &[u8]) -> Option<u64> {
    let mut walker = Walker {
        bytes,
        pos: 0,
        limits: Limits {
            max_bytes: usize::MAX,
            max_depth: 1,
            max_items: u64::MAX,
            shortest_form: false,
            text_keys: false,
        },
    };
    let head = walker.byte().ok()?;
    if head >> 5 != 4 {
        return None;
    }
    walker.argument(head & 0x1f).ok()?;
    let first = walker.byte().ok()?;
    if first >> 5 != 0 {
        return None;
    }
    walker.argument(first & 0x1f).ok()
}

/// Checks `bytes` like [`check_structure`] and returns the CBOR major type of each item of
/// the top-level array (empty when the top level is not an array).
pub fn array_item_types(bytes: &[u8], limits: Limits) -> Result<Vec<u8>, WireError> {
    check_structure(bytes, limits)?;
    let mut walker = Walker {
        bytes,
        pos: 0,
        limits,
    };
    let initial = walker.byte()?;
    if initial >> 5 != 4 {
        return Ok(Vec::new());
    }
    let len = walker.argument(initial & 0x1f)?;
    let mut types = Vec::with_capacity(len as usize);
    for _ in 0..len {
        types.push(walker.bytes.get(walker.pos).ok_or(WireError::Truncated)? >> 5);
        walker.item(2)?;
    }
    Ok(types)
}

/// Walks one CBOR data item covering all of `bytes` and checks it against `limits`.
pub fn check_structure(bytes: &[u8], limits: Limits) -> Result<(), WireError> {
    if bytes.len() > limits.max_bytes {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let mut walker = Walker {
        bytes,
        pos: 0,
        limits,
    };
    walker.item(1)?;
    if walker.pos != bytes.len() {
        return Err(WireError::TrailingBytes {
            extra: bytes.len() - walker.pos,
        });
    }
    Ok(())
}

struct Walker<'a> {
    bytes: &'a [u8],
    pos: usize,
    limits: Limits,
}

impl Walker<'_> {
    fn byte(&mut self) -> Result<u8, WireError> {
        let b = *self.bytes.get(self.pos).ok_or(WireError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&[u8], WireError> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n > remaining {
            return Err(WireError::Truncated);
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    /// Reads the argument of an initial byte with additional information `info`.
    fn argument(&mut self, info: u8) -> Result<u64, WireError> {
        let n = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 => {
                return Err(WireError::Malformed(
                    "indefinite-length items are not allowed".into(),
                ));
            }
            _ => {
                return Err(WireError::Malformed(format!(
                    "reserved additional information {info}"
                )));
            }
        };
        let raw = self.take(n)?;
        let value = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let shortest = match n {
            1 => value >= 24,
            2 => value > 0xff,
            4 => value > 0xffff,
            _ => value > 0xffff_ffff,
        };
        if self.limits.shortest_form && !shortest {
            return Err(WireError::Malformed(format!(
                "{value} is not in its shortest encoding"
            )));
        }
        Ok(value)
    }

    fn item(&mut self, depth: usize) -> Result<(), WireError> {
        let initial = self.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        match major {
            0 | 1 => {
                self.argument(info)?;
            }
            2 | 3 => {
                let len = self.argument(info)?;
                let body = self.take(len)?;
                if major == 3 && std::str::from_utf8(body).is_err() {
                    return Err(WireError::Malformed("text string is not UTF-8".into()));
                }
            }
            4 | 5 => {
                if depth > self.limits.max_depth {
                    return Err(WireError::TooDeep {
                        limit: self.limits.max_depth,
                    });
                }
                let len = self.argument(info)?;
                if len > self.limits.max_items {
                    return Err(WireError::TooManyItems {
                        len,
                        limit: self.limits.max_items,
                    });
                }
                if major == 5 && self.limits.text_keys {
                    let mut keys: Vec<&[u8]> = Vec::with_capacity(len as usize);
                    for _ in 0..len {
                        let start = self.pos;
                        if self.bytes.get(start).is_some_and(|b| b >> 5 != 3) {
                            return Err(WireError::Malformed(
                                "map keys must be text strings".into(),
                            ));
                        }
                        self.item(depth + 1)?;
                        keys.push(&self.bytes[start..self.pos]);
                        self.item(depth + 1)?;
                    }
                    keys.sort_unstable();
                    if keys.windows(2).any(|w| w[0] == w[1]) {
                        return Err(WireError::Malformed("a map repeats a key".into()));
                    }
                } else {
                    let children = if major == 5 { len * 2 } else { len };
                    for _ in 0..children {
                        self.item(depth + 1)?;
                    }
                }
            }
            6 => return Err(WireError::Malformed("CBOR tags are not allowed".into())),
            _ => match info {
                // false, true, null, undefined
                20..=23 => {}
                // half, single and double floats
                25 => {
                    self.take(2)?;
                }
                26 => {
                    self.take(4)?;
                }
                27 => {
                    self.take(8)?;
                }
                _ => {
                    return Err(WireError::Malformed(format!(
                        "simple value {info} is not allowed"
                    )));
                }
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_bytes: 1024,
        max_depth: 4,
        max_items: 8,
        shortest_form: false,
        text_keys: false,
    };

    #[test]
    fn shortest_form_is_enforced_only_where_asked() {
        // 1 encoded in two bytes
        let long_one = [0x18, 0x01];
        check_structure(&long_one, L).unwrap();
        let strict = Limits {
            shortest_form: true,
            ..L
        };
        assert!(matches!(
            check_structure(&long_one, strict),
            Err(WireError::Malformed(_))
        ));
        check_structure(&[0x18, 0x18], strict).unwrap();
        check_structure(&[0x19, 0x01, 0x00], strict).unwrap();
        assert!(check_structure(&[0x19, 0x00, 0xff], strict).is_err());
    }

    #[test]
    fn accepts_a_plain_map() {
        // {"a": [1, 2], "b": "x"}
        let bytes = [0xa2, 0x61, b'a', 0x82, 0x01, 0x02, 0x61, b'b', 0x61, b'x'];
        check_structure(&bytes, L).unwrap();
    }

    #[test]
    fn refuses_each_structural_fault_with_its_own_error() {
        assert!(matches!(
            check_structure(&[0x82, 0x01], L),
            Err(WireError::Truncated)
        ));
        assert!(matches!(
            check_structure(&[0x01, 0x02], L),
            Err(WireError::TrailingBytes { extra: 1 })
        ));
        assert!(matches!(
            check_structure(&[0x81, 0x81, 0x81, 0x81, 0x81, 0x01], L),
            Err(WireError::TooDeep { limit: 4 })
        ));
        assert!(matches!(
            check_structure(&[0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0], L),
            Err(WireError::TooManyItems { len: 9, limit: 8 })
        ));
        assert!(matches!(
            check_structure(&[0x9f, 0x01, 0xff], L),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            check_structure(&[0xc1, 0x01], L),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            check_structure(&[0x62, 0xff, 0xfe], L),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            check_structure(&vec![0u8; 2000], L),
            Err(WireError::TooLarge { size: 2000, .. })
        ));
    }

    #[test]
    fn payload_maps_need_unique_text_keys() {
        // {"a": 1}
        check_payload(&[0xa1, 0x61, b'a', 0x01], L).unwrap();
        // {1: 1}
        assert!(
            matches!(check_payload(&[0xa1, 0x01, 0x01], L), Err(WireError::Malformed(m)) if m.contains("text"))
        );
        // {"a": 1, "a": 2}
        assert!(matches!(
            check_payload(&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02], L),
            Err(WireError::Malformed(m)) if m.contains("repeats")
        ));
        // [1] at the top
        assert!(
            matches!(check_payload(&[0x81, 0x01], L), Err(WireError::Malformed(m)) if m.contains("map"))
        );
        // a nested map with an integer key
        assert!(check_payload(&[0xa1, 0x61, b'a', 0xa1, 0x00, 0x00], L).is_err());
    }

    #[test]
    fn the_first_array_item_is_read_without_the_rest() {
        assert_eq!(peek_first_uint(&[0x89, 0x02]), Some(2));
        assert_eq!(peek_first_uint(&[0x98, 0x20, 0x18, 0x30]), Some(0x30));
        assert_eq!(peek_first_uint(&[0xa1, 0x02]), None);
        assert_eq!(peek_first_uint(&[0x81, 0x61]), None);
        assert_eq!(peek_first_uint(&[]), None);
    }

    #[test]
    fn a_huge_declared_length_is_truncation_not_an_allocation() {
        // byte string claiming 2^63 bytes
        let bytes = [0x5b, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            check_structure(&bytes, L),
            Err(WireError::Truncated)
        ));
    }
}

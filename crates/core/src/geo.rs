//! Geography for routing: which countries border which (land or a short sea link), and
//! which are in the EU. Used only for the `geography` score term.

use aiguillage_wire::CountryCode;

/// Pairs of neighbouring countries (ISO 3166-1 alpha-2), each listed once.
const NEIGHBOURS: &[(&str, &str)] = &[
    ("AT", "CH"),
    ("AT", "CZ"),
    ("AT", "DE"),
    ("AT", "HU"),
    ("AT", "IT"),
    ("AT", "SI"),
    ("AT", "SK"),
    ("BE", "DE"),
    ("BE", "FR"),
    ("BE", "LU"),
    ("BE", "NL"),
    ("BG", "GR"),
    ("BG", "MK"),
    ("BG", "RO"),
    ("BG", "RS"),
    ("BG", "TR"),
    ("CH", "DE"),
    ("CH", "FR"),
    ("CH", "IT"),
    ("CY", "GR"),
    ("CZ", "DE"),
    ("CZ", "PL"),
    ("CZ", "SK"),
    ("DE", "DK"),
    ("DE", "FR"),
    ("DE", "LU"),
    ("DE", "NL"),
    ("DE", "PL"),
    ("DK", "SE"),
    ("DK", "NO"),
    ("EE", "FI"),
    ("EE", "LV"),
    ("ES", "FR"),
    ("ES", "PT"),
    ("FI", "NO"),
    ("FI", "SE"),
    ("FR", "IT"),
    ("FR", "LU"),
    ("FR", "GB"),
    ("GB", "IE"),
    ("GR", "MK"),
    ("GR", "TR"),
    ("HU", "RO"),
    ("HU", "RS"),
    ("HU", "SI"),
    ("HU", "SK"),
    ("IS", "NO"),
    ("IT", "MT"),
    ("IT", "SI"),
    ("LT", "LV"),
    ("LT", "PL"),
    ("MD", "RO"),
    ("MK", "RS"),
    ("NO", "SE"),
    ("PL", "SK"),
    ("RO", "RS"),
];

const EU: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// A country code as an index in 0..676.
const fn index(c: &[u8]) -> usize {
    (c[0] - b'A') as usize * 26 + (c[1] - b'A') as usize
}

/// One bit per country code, for the EU.
const EU_BITS: [u64; 11] = {
    let mut bits = [0u64; 11];
    let mut i = 0;
    while i < EU.len() {
        let k = index(EU[i].as_bytes());
        bits[k / 64] |= 1 << (k % 64);
        i += 1;
    }
    bits
};

/// Every neighbouring pair as `a * 676 + b`, both ways round, sorted for binary search.
const PAIRS: [u32; 2 * NEIGHBOURS.len()] = {
    let mut out = [0u32; 2 * NEIGHBOURS.len()];
    let mut i = 0;
    while i < NEIGHBOURS.len() {
        let a = index(NEIGHBOURS[i].0.as_bytes()) as u32;
        let b = index(NEIGHBOURS[i].1.as_bytes()) as u32;
        out[2 * i] = a * 676 + b;
        out[2 * i + 1] = b * 676 + a;
        i += 1;
    }
    // Insertion sort: const fns cannot call slice::sort.
    let mut k = 1;
    while k < out.len() {
        let mut m = k;
        while m > 0 && out[m - 1] > out[m] {
            let tmp = out[m];
            out[m] = out[m - 1];
            out[m - 1] = tmp;
            m -= 1;
        }
        k += 1;
    }
    out
};

fn idx(c: CountryCode) -> usize {
    c.index()
}

/// Routing asks these for every candidate, so they are table look-ups.
pub fn are_neighbours(a: CountryCode, b: CountryCode) -> bool {
    PAIRS
        .binary_search(&((idx(a) * 676 + idx(b)) as u32))
        .is_ok()
}

pub fn in_eu(c: CountryCode) -> bool {
    let k = idx(c);
    EU_BITS[k / 64] & (1 << (k % 64)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(s: &str) -> CountryCode {
        CountryCode::new(s).unwrap()
    }

    #[test]
    fn neighbourhood_is_symmetric() {
        assert!(are_neighbours(cc("LU"), cc("DE")));
        assert!(are_neighbours(cc("DE"), cc("LU")));
        assert!(!are_neighbours(cc("LU"), cc("IT")));
        assert!(in_eu(cc("LU")));
        assert!(!in_eu(cc("CH")));
        assert!(!in_eu(cc("ZZ")));
        // Every listed pair, both ways round, and nothing else among them.
        for (a, b) in NEIGHBOURS {
            assert!(
                are_neighbours(cc(a), cc(b)) && are_neighbours(cc(b), cc(a)),
                "{a}-{b}"
            );
        }
        for a in EU {
            assert!(in_eu(cc(a)), "{a}");
            assert!(!are_neighbours(cc(a), cc(a)));
        }
    }
}

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

pub fn are_neighbours(a: CountryCode, b: CountryCode) -> bool {
    // Routing asks this for every candidate, so compare two-letter codes as integers.
    let key = |c: &str| -> u16 {
        let b = c.as_bytes();
        (u16::from(b[0]) << 8) | u16::from(b[1])
    };
    let (a, b) = (key(a.as_str()), key(b.as_str()));
    NEIGHBOURS.iter().any(|(x, y)| {
        let (x, y) = (key(x), key(y));
        (x == a && y == b) || (x == b && y == a)
    })
}

pub fn in_eu(c: CountryCode) -> bool {
    EU.contains(&c.as_str())
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
    }
}

//! Where members are, for the network model: approximate coordinates of each country's
//! capital, the main language used for synthetic members, and great-circle distances.
//! One-way latency between two countries is modelled as a base plus a cost per 1,000 km
//! (see `scenario::Network`), unless a scenario names the pair.

use aiguillage_wire::CountryCode;

/// (code, latitude, longitude, main language) for the countries members come from.
pub const COUNTRIES: &[(&str, f64, f64, &str)] = &[
    ("AT", 48.21, 16.37, "de"),
    ("BE", 50.85, 4.35, "nl"),
    ("BG", 42.70, 23.32, "bg"),
    ("CH", 46.95, 7.45, "de"),
    ("CY", 35.17, 33.36, "el"),
    ("CZ", 50.08, 14.44, "cs"),
    ("DE", 52.52, 13.40, "de"),
    ("DK", 55.68, 12.57, "da"),
    ("EE", 59.44, 24.75, "et"),
    ("ES", 40.42, -3.70, "es"),
    ("FI", 60.17, 24.94, "fi"),
    ("FR", 48.86, 2.35, "fr"),
    ("GB", 51.51, -0.13, "en"),
    ("GR", 37.98, 23.73, "el"),
    ("HR", 45.81, 15.98, "hr"),
    ("HU", 47.50, 19.04, "hu"),
    ("IE", 53.35, -6.26, "en"),
    ("IS", 64.15, -21.94, "is"),
    ("IT", 41.90, 12.50, "it"),
    ("LT", 54.69, 25.28, "lt"),
    ("LU", 49.61, 6.13, "fr"),
    ("LV", 56.95, 24.11, "lv"),
    ("MD", 47.01, 28.86, "ro"),
    ("MK", 42.00, 21.43, "mk"),
    ("MT", 35.90, 14.51, "mt"),
    ("NL", 52.37, 4.90, "nl"),
    ("NO", 59.91, 10.75, "no"),
    ("PL", 52.23, 21.01, "pl"),
    ("PT", 38.72, -9.14, "pt"),
    ("RO", 44.43, 26.10, "ro"),
    ("RS", 44.79, 20.45, "sr"),
    ("SE", 59.33, 18.07, "sv"),
    ("SI", 46.06, 14.51, "sl"),
    ("SK", 48.15, 17.11, "sk"),
    ("TR", 39.93, 32.86, "tr"),
];

fn find(c: CountryCode) -> Option<&'static (&'static str, f64, f64, &'static str)> {
    COUNTRIES.iter().find(|e| e.0 == c.as_str())
}

/// Whether the network model knows where `c` is.
pub fn known(c: CountryCode) -> bool {
    find(c).is_some()
}

/// The language synthetic members of `c` speak besides English.
pub fn language(c: CountryCode) -> &'static str {
    find(c).map_or("en", |e| e.3)
}

/// Great-circle distance between the capitals of `a` and `b`, in km (1,000 km when either
/// is unknown).
pub fn distance_km(a: CountryCode, b: CountryCode) -> f64 {
    if a == b {
        return 0.0;
    }
    let (Some(x), Some(y)) = (find(a), find(b)) else {
        return 1_000.0;
    };
    let (la1, lo1, la2, lo2) = (
        x.1.to_radians(),
        x.2.to_radians(),
        y.1.to_radians(),
        y.2.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6_371.0 * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_plausible() {
        let c = |s| CountryCode::new(s).unwrap();
        let d = distance_km(c("LU"), c("DE"));
        assert!((500.0..700.0).contains(&d), "{d}");
        assert_eq!(distance_km(c("FR"), c("FR")), 0.0);
        assert!(distance_km(c("PT"), c("FI")) > 3_000.0);
    }
}

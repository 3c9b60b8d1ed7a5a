//! Human output: tables with a header row, times in the local time zone, ids in their
//! numeric order.

use aiguillage_wire::Timestamp;

/// Rows under a header, each column as wide as its widest cell; the last column is not
/// padded.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate().take(n) {
                if i + 1 == n {
                    line.push_str(c);
                } else {
                    let pad = widths[i] - c.chars().count();
                    line.push_str(c);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }

    /// The table, or `empty` when it has no rows.
    pub fn print_or(&self, empty: &str) {
        if self.is_empty() {
            println!("{empty}");
        } else {
            self.print();
        }
    }
}

/// A time in the local time zone (TZ, or /etc/localtime), ISO 8601 with its offset:
/// `2026-12-01T14:32:09+01:00`.
pub fn local_time(t: Timestamp) -> String {
    if t > aiguillage_wire::LATEST_TIME {
        return format!("{} ms after 1970", t.millis());
    }
    let secs = (t.millis() / 1000) as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which outlives the call; it is the
    // thread-safe form and reads the time zone from the environment.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return crate::clock::format_time(t);
    }
    let off = tm.tm_gmtoff;
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.unsigned_abs();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off / 3600,
        (off % 3600) / 60
    )
}

/// [`local_time`] of a JSON milliseconds value; `-` when there is none.
pub fn local_time_of(v: &serde_json::Value) -> String {
    v.as_u64()
        .map_or_else(|| "-".to_owned(), |ms| local_time(Timestamp(ms)))
}

/// The order of ids such as `lu-l-aif/10` or `lu-l-aif/p2`: by member, then by number.
pub fn id_order(id: &str) -> (String, u64, String) {
    let (member, rest) = id.rsplit_once('/').unwrap_or(("", id));
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    (
        member.to_owned(),
        digits.parse().unwrap_or(u64::MAX),
        rest.to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_under_their_header_and_ids_sort_by_number() {
        let mut t = Table::new(&["id", "state", "note"]);
        t.row(vec!["lu-l-aif/10".into(), "offered".into(), "x".into()]);
        t.row(vec![
            "lu-l-aif/2".into(),
            "handed_over".into(),
            String::new(),
        ]);
        assert_eq!(
            t.render(),
            "id           state        note\nlu-l-aif/10  offered      x\nlu-l-aif/2   handed_over\n"
        );
        let mut ids = vec!["lu-l-aif/10", "de-jaif/3", "lu-l-aif/2", "lu-l-aif/p1"];
        ids.sort_by_key(|i| id_order(i));
        assert_eq!(
            ids,
            ["de-jaif/3", "lu-l-aif/p1", "lu-l-aif/2", "lu-l-aif/10"]
        );
    }

    #[test]
    fn local_times_carry_their_offset() {
        // Whatever the zone, the text is ISO 8601 with an offset, and UTC's is +00:00.
        let s = local_time(Timestamp(1_796_131_929_226));
        assert_eq!(s.len(), 25, "{s}");
        assert!(s.as_bytes()[10] == b'T' && (s.contains('+') || s[19..].contains('-')));
    }
}

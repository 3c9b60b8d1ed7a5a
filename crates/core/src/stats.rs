//! The one quantile the project reports with, wherever a median or a p99 is printed: the
//! KPIs, the simulator, the devnet summary and the network benchmark.

/// The `q` quantile of `sorted` (ascending) by the nearest-rank method: the smallest value
/// with at least a share `q` of the values at or below it. `None` when there are none.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Sorts `values` and takes their `q` quantile.
pub fn quantile_of(values: &mut [f64], q: f64) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    quantile(values, q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&v, 0.0), Some(1));
        assert_eq!(quantile::<u64>(&[], 0.5), None);
        // Three values: the median is the middle one, the p99 the largest.
        let mut f = vec![3.0, 1.0, 2.0];
        assert_eq!(quantile_of(&mut f, 0.5), Some(2.0));
        assert_eq!(quantile_of(&mut f, 0.99), Some(3.0));
    }
}

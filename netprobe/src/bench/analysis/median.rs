//! The median of a few values, as the bench takes it over a run's slices
//! and over the noise of every pair of modes.

/// The middle one of `sorted`, or the middle two of an even count.
pub fn middle<T>(sorted: &[T]) -> &[T] {
    let len = sorted.len();
    &sorted[len.saturating_sub(1) / 2..len / 2 + len.min(1)]
}

/// The middle value, or the mean of the middle two; None without values.
pub fn median(values: impl IntoIterator<Item = u64>) -> Option<u64> {
    let mut values: Vec<u64> = values.into_iter().collect();
    values.sort_unstable();
    let middle = middle(&values);
    (!middle.is_empty()).then(|| middle.iter().sum::<u64>() / middle.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median([30, 10, 20]), Some(20));
        // One slice 5 us slow: the median stays with the other three.
        assert_eq!(median([21_000, 20_000, 26_000, 20_400]), Some(20_700));
        assert_eq!(median([7]), Some(7));
        assert_eq!(median([]), None);
    }

    #[test]
    fn the_middle_is_one_value_or_two() {
        assert_eq!(middle(&[1, 2, 3]), [2]);
        assert_eq!(middle(&[1, 2, 3, 4]), [2, 3]);
        assert_eq!(middle(&[1, 2]), [1, 2]);
        assert_eq!(middle(&[1]), [1]);
        assert_eq!(middle::<u64>(&[]), [] as [u64; 0]);
    }
}

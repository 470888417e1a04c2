//! The median of a few values, as the bench takes it over a run's slices
//! and over the noise of every pair of modes.

/// The middle value, or the mean of the middle two; None without values.
pub fn median(values: impl IntoIterator<Item = u64>) -> Option<u64> {
    let mut values: Vec<u64> = values.into_iter().collect();
    values.sort_unstable();
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        len if len % 2 == 1 => Some(values[middle]),
        _ => Some(values[middle - 1].midpoint(values[middle])),
    }
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
}

//! Timing adapters over entries, shared by replay and export: playback speed and an idle
//! limit (asciinema's `--speed` and `--idle-time-limit`). Each is an iterator adapter, so
//! they compose and never hold more than one entry.

use super::Entry;

/// Divides every offset by `factor` (2.0 plays twice as fast).
pub fn speed<I: Iterator<Item = Entry>>(it: I, factor: f64) -> impl Iterator<Item = Entry> {
    let factor = if factor.is_finite() && factor > 0.0 {
        factor
    } else {
        1.0
    };
    it.map(move |mut e| {
        let at = e.at_mut();
        *at = (*at as f64 / factor) as u64;
        e
    })
}

/// Shortens every pause longer than `max_us` to `max_us`; later entries move up with it.
pub fn idle_limit<I: Iterator<Item = Entry>>(it: I, max_us: u64) -> impl Iterator<Item = Entry> {
    let mut last_in = 0u64;
    let mut last_out = 0u64;
    it.map(move |mut e| {
        let at = e.at_mut();
        let gap = at.saturating_sub(last_in);
        last_in = last_in.max(*at);
        last_out += gap.min(max_us);
        *at = last_out;
        e
    })
}

/// Drops what happened before `from_us` and starts the clock there; output before it is
/// kept (at 0) so the screen is right when playback starts, markers and resizes are not
/// lost either.
pub fn starting_at<I: Iterator<Item = Entry>>(it: I, from_us: u64) -> impl Iterator<Item = Entry> {
    it.map(move |mut e| {
        let at = e.at_mut();
        *at = at.saturating_sub(from_us);
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: &[u64]) -> Vec<Entry> {
        us.iter()
            .map(|&at_us| Entry::Marker {
                at_us,
                label: String::new(),
            })
            .collect()
    }

    fn times(it: impl Iterator<Item = Entry>) -> Vec<u64> {
        it.map(|e| e.at_us()).collect()
    }

    #[test]
    fn speed_and_idle_limit_compose() {
        let e = at(&[0, 1_000, 10_000_000, 10_002_000]);
        assert_eq!(
            times(speed(e.clone().into_iter(), 2.0)),
            [0, 500, 5_000_000, 5_001_000]
        );
        assert_eq!(
            times(idle_limit(e.clone().into_iter(), 2_000_000)),
            [0, 1_000, 2_001_000, 2_003_000]
        );
        assert_eq!(
            times(speed(idle_limit(e.into_iter(), 2_000_000), 1000.0)),
            [0, 1, 2_001, 2_003]
        );
        assert_eq!(times(starting_at(at(&[5, 10]).into_iter(), 7)), [0, 3]);
    }
}

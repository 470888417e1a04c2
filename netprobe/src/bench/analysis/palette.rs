//! The page's colours: strong ones for the modes, lines and points; soft
//! ones for the segment kinds, the areas of bars; so that no mode shares a
//! colour with a segment. Each mode and kind keeps its colour from page to
//! page (and in `--compare`).

use plotters::style::RGBColor;

use crate::{lab::Mode, path::SegmentKind};

/// A mode's colour: host's blue, then ColorBrewer Dark2, each far from
/// every segment kind's pastel.
pub fn mode_color(mode: Mode) -> RGBColor {
    match mode {
        Mode::Host => RGBColor(0x4e, 0x79, 0xa7),
        Mode::FlannelVxlan => RGBColor(0xd9, 0x5f, 0x02),
        Mode::VxlanFastpath => RGBColor(0x1b, 0x9e, 0x77),
        Mode::AwsVpc => RGBColor(0xe7, 0x29, 0x8a),
        Mode::Macvlan => RGBColor(0x66, 0xa6, 0x1e),
        Mode::FlannelHostgw => RGBColor(0xe6, 0xab, 0x02),
        Mode::Bridge => RGBColor(0xa6, 0x76, 0x1d),
        Mode::Ipvlan => RGBColor(0x66, 0x66, 0x66),
    }
}

/// A segment kind's colour (ColorBrewer Set3, pastel).
pub fn kind_color(kind: SegmentKind) -> RGBColor {
    match kind {
        SegmentKind::Nic => RGBColor(0xd9, 0xd9, 0xd9),
        SegmentKind::VxlanDecap => RGBColor(0xfb, 0x80, 0x72),
        SegmentKind::Routing => RGBColor(0xfd, 0xb4, 0x62),
        SegmentKind::Bridge => RGBColor(0x80, 0xb1, 0xd3),
        SegmentKind::Veth => RGBColor(0xb3, 0xde, 0x69),
        SegmentKind::Macvlan => RGBColor(0xff, 0xed, 0x6f),
        SegmentKind::Stack => RGBColor(0xbe, 0xba, 0xda),
        SegmentKind::VxlanEncap => RGBColor(0xfc, 0xcd, 0xe5),
        SegmentKind::Qdisc => RGBColor(0xcc, 0xeb, 0xc5),
        SegmentKind::Link => RGBColor(0x8d, 0xd3, 0xc7),
        SegmentKind::Application => RGBColor(0xbc, 0x80, 0xbd),
    }
}

/// `color` as CSS.
pub fn css(color: RGBColor) -> String {
    let RGBColor(red, green, blue) = color;
    format!("#{red:02x}{green:02x}{blue:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How far apart two colours lie in RGB (0 to 441).
    fn distance(a: RGBColor, b: RGBColor) -> f64 {
        let (RGBColor(r1, g1, b1), RGBColor(r2, g2, b2)) = (a, b);
        [(r1, r2), (g1, g2), (b1, b2)]
            .iter()
            .map(|&(x, y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn every_mode_and_kind_has_a_colour_of_its_own() {
        let modes = Mode::ALL.map(mode_color);
        let kinds = SegmentKind::ALL.map(kind_color);
        let all: Vec<String> = modes
            .iter()
            .chain(&kinds)
            .map(|&color| css(color))
            .collect();
        let mut distinct = all.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
        assert_eq!(css(mode_color(Mode::Host)), "#4e79a7");
    }

    #[test]
    fn no_mode_looks_like_a_segment_kind() {
        // Tableau's purple (#b07aa1) and Set3's (#bc80bd) lie 31 apart and
        // read as one colour.
        for mode in Mode::ALL {
            for kind in SegmentKind::ALL {
                let apart = distance(mode_color(mode), kind_color(kind));
                assert!(apart >= 80.0, "{mode} and {kind:?}: {apart:.0}");
            }
        }
        for (index, &a) in Mode::ALL.iter().enumerate() {
            for &b in &Mode::ALL[index + 1..] {
                let apart = distance(mode_color(a), mode_color(b));
                assert!(apart >= 60.0, "{a} and {b}: {apart:.0}");
            }
        }
    }
}

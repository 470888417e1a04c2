//! The page's colours: strong ones for the modes, lines and points; soft
//! ones for the segment kinds, the areas of bars; so that no mode shares a
//! colour with a segment. Each mode and kind keeps its colour from page to
//! page (and in `--compare`).

use plotters::style::RGBColor;

use crate::{lab::Mode, path::SegmentKind};

/// A mode's colour (Tableau 10).
pub fn mode_color(mode: Mode) -> RGBColor {
    match mode {
        Mode::Host => RGBColor(0x4e, 0x79, 0xa7),
        Mode::Macvlan => RGBColor(0xf2, 0x8e, 0x2b),
        Mode::FlannelHostgw => RGBColor(0x59, 0xa1, 0x4f),
        Mode::AwsVpc => RGBColor(0xb0, 0x7a, 0xa1),
        Mode::FlannelVxlan => RGBColor(0xe1, 0x57, 0x59),
        Mode::Bridge => RGBColor(0x76, 0xb7, 0xb2),
        Mode::VxlanFastpath => RGBColor(0x9c, 0x75, 0x5f),
        Mode::Ipvlan => RGBColor(0xed, 0xc9, 0x48),
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
}

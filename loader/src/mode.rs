//! BiT's input modes and the HyperRule resolution choice (BIT_SPEC §1.1, §2; DESIGN §4).
//!
//! | mode | BiT pipeline | default sizes |
//! |---|---|---|
//! | `upstream` | Inception random-resized crop (scale 0.08-1, ratio 3/4-4/3) + flip | crop 224 |
//! | `small` | squash to 160, random crop 128, flip | 160 -> 128 |
//! | `large` | squash to 512, random crop 480, flip (448/384 selectable) | 512 -> 480 |
//! | `test` | squash to the crop size | crop 480 (128 for small data) |

use serde::{Deserialize, Serialize};

use crate::LoaderError;

/// One of BiT's four pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Upstream,
    Small,
    Large,
    Test,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Upstream, Mode::Small, Mode::Large, Mode::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Upstream => "upstream",
            Mode::Small => "small",
            Mode::Large => "large",
            Mode::Test => "test",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = LoaderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| LoaderError::Config(format!("unknown mode {s:?} (upstream, small, large, test)")))
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// BiT's `large` crops: the released code's 480 (from 512), and the paper's 384 (from 448)
/// and 448 (from 512).
pub const LARGE_CROPS: [(u32, u32); 3] = [(512, 480), (512, 448), (448, 384)];

/// The geometry of one pipeline: what every sample goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transform {
    pub mode: Mode,
    /// Side of the square squash before the random crop (`small`/`large`); equal to `crop`
    /// for `upstream` and `test`.
    pub precrop: u32,
    /// Side of the square output.
    pub crop: u32,
    /// Random crop on (`upstream`, `small`, `large`). Off: the whole image is squashed to
    /// `crop` (VTAB tasks where cropping destroys the label).
    pub random_crop: bool,
    /// Random horizontal flip with p = 0.5 on (train modes). Off for tasks where it destroys
    /// the label.
    pub flip: bool,
}

impl Transform {
    /// BiT's defaults for `mode`; `crop` overrides the output side (`large`: 480, 448 or 384
    /// pick their BiT precrop; `test`: any side; `upstream`: any side).
    pub fn for_mode(mode: Mode, crop: Option<u32>) -> Result<Transform, LoaderError> {
        let (precrop, crop) = match (mode, crop) {
            (Mode::Upstream, c) => {
                let c = c.unwrap_or(224);
                (c, c)
            }
            (Mode::Small, None | Some(128)) => (160, 128),
            (Mode::Small, Some(c)) => {
                return Err(LoaderError::Config(format!("mode small crops 128 (from 160), not {c}")));
            }
            (Mode::Large, None) => (512, 480),
            (Mode::Large, Some(c)) => LARGE_CROPS
                .into_iter()
                .find(|&(_, crop)| crop == c)
                .ok_or_else(|| LoaderError::Config(format!("mode large crops 480, 448 or 384, not {c}")))?,
            (Mode::Test, c) => {
                let c = c.unwrap_or(480);
                (c, c)
            }
        };
        if crop == 0 || crop > 4096 {
            return Err(LoaderError::Config(format!("crop size {crop} is outside 1..=4096")));
        }
        let train = mode != Mode::Test;
        Ok(Transform { mode, precrop, crop, random_crop: train, flip: train })
    }
}

/// BiT-HyperRule resolution (`bit_hyperrule.get_resolution`): images with area below
/// 96x96 (strict) train at 160 -> 128, everything else at 512 -> 480. BiT looks the size up in
/// a table of five dataset names; bitkit takes the median stored image area of the dataset.
pub fn hyperrule_mode(median_area: u64) -> Mode {
    if median_area < 96 * 96 {
        Mode::Small
    } else {
        Mode::Large
    }
}

/// The median of `width * height` over `sizes` (0 for none): what [`hyperrule_mode`] takes.
pub fn median_area(sizes: impl Iterator<Item = (u32, u32)>) -> u64 {
    let mut areas: Vec<u64> = sizes.map(|(w, h)| u64::from(w) * u64::from(h)).collect();
    if areas.is_empty() {
        return 0;
    }
    let mid = areas.len() / 2;
    *areas.select_nth_unstable(mid).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_bit() {
        let t = |m, c| Transform::for_mode(m, c).expect("valid");
        assert_eq!((t(Mode::Small, None).precrop, t(Mode::Small, None).crop), (160, 128));
        assert_eq!((t(Mode::Large, None).precrop, t(Mode::Large, None).crop), (512, 480));
        assert_eq!((t(Mode::Large, Some(384)).precrop, t(Mode::Large, Some(384)).crop), (448, 384));
        assert_eq!((t(Mode::Upstream, None).precrop, t(Mode::Upstream, None).crop), (224, 224));
        assert_eq!(t(Mode::Test, Some(128)).crop, 128);
        assert!(!t(Mode::Test, None).flip && !t(Mode::Test, None).random_crop);
        assert!(t(Mode::Small, None).flip && t(Mode::Upstream, None).random_crop);
        assert!(Transform::for_mode(Mode::Large, Some(500)).is_err());
        assert!(Transform::for_mode(Mode::Small, Some(224)).is_err());
        assert!(Transform::for_mode(Mode::Test, Some(0)).is_err());
    }

    #[test]
    fn hyperrule_threshold_is_strict() {
        assert_eq!(hyperrule_mode(32 * 32), Mode::Small);
        assert_eq!(hyperrule_mode(96 * 96 - 1), Mode::Small);
        assert_eq!(hyperrule_mode(96 * 96), Mode::Large);
        assert_eq!(hyperrule_mode(500 * 375), Mode::Large);
        assert_eq!(median_area([(32, 32), (500, 375), (32, 32)].into_iter()), 1024);
        assert_eq!(median_area(std::iter::empty()), 0);
    }

    #[test]
    fn modes_round_trip_through_their_names() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>().expect("parses"), m);
        }
        assert!("medium".parse::<Mode>().is_err());
    }
}

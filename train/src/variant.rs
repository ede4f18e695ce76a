//! The BiT ResNet-v2 family (BIT_SPEC §3.5, §3.7): block units and width per variant, and the
//! table of every parameter's name and shape. The model ([`crate::model`]) creates exactly
//! these parameters, the .npz mapping ([`crate::weights`]) translates exactly these names, and
//! the parameter count is computed from the table without allocating a tensor, so even
//! R152x4 (936M parameters) is counted instantly.

use std::fmt;
use std::str::FromStr;

use crate::error::TrainError;

/// A member of the family: units per block and the root width (64 * width factor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub name: &'static str,
    /// Units in block1..block4.
    pub units: [usize; 4],
    /// Output channels of the root conv: 64 * wf. Block b (0-based) has cmid = root << b and
    /// cout = 4 * cmid.
    pub root_width: i64,
}

/// The published variants and a tiny one for tests (one unit per block, half width: still
/// GroupNorm(32)-compatible at every layer).
pub const VARIANTS: [Variant; 7] = [
    Variant { name: "r50x1", units: [3, 4, 6, 3], root_width: 64 },
    Variant { name: "r50x3", units: [3, 4, 6, 3], root_width: 192 },
    Variant { name: "r101x1", units: [3, 4, 23, 3], root_width: 64 },
    Variant { name: "r101x3", units: [3, 4, 23, 3], root_width: 192 },
    Variant { name: "r152x2", units: [3, 8, 36, 3], root_width: 128 },
    Variant { name: "r152x4", units: [3, 8, 36, 3], root_width: 256 },
    Variant { name: "tiny", units: [1, 1, 1, 1], root_width: 32 },
];

/// GroupNorm groups everywhere (BIT_SPEC §3.2).
pub const GROUPS: i64 = 32;

/// One convolution-bearing unit of the network, as the model builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitShape {
    /// `block1`..`block4`.
    pub block: usize,
    /// 1-based, as in `unit01`.
    pub unit: usize,
    pub cin: i64,
    pub cmid: i64,
    pub cout: i64,
    /// On the 3x3 conv and the projection (BIT_SPEC §3.4).
    pub stride: i64,
    /// Only unit01 of each block has a projection (stride != 1 or cin != cout).
    pub projection: bool,
}

impl UnitShape {
    /// `block2/unit01` style prefix (npz uses `/`, the var store `.`).
    pub fn prefix(&self, sep: char) -> String {
        format!("block{}{sep}unit{:02}", self.block, self.unit)
    }
}

impl Variant {
    pub fn by_name(name: &str) -> Option<Variant> {
        let lower = name.to_ascii_lowercase();
        let lower = lower.trim_start_matches("bit-m-").trim_start_matches("bit-s-");
        VARIANTS.iter().copied().find(|v| v.name == lower)
    }

    /// The width factor (1, 2, 3, 4; 0.5 for the tiny variant).
    pub fn width_factor(&self) -> f64 {
        self.root_width as f64 / 64.0
    }

    /// Channels of the pre-head features: 2048 * wf.
    pub fn feature_dim(&self) -> i64 {
        self.root_width * 8 * 4
    }

    /// Every unit in order, with its channel counts and stride.
    pub fn unit_shapes(&self) -> Vec<UnitShape> {
        let mut out = Vec::new();
        let mut cin = self.root_width;
        for (b, &count) in self.units.iter().enumerate() {
            let cmid = self.root_width << b;
            let cout = cmid * 4;
            for u in 0..count {
                let stride = if u == 0 && b > 0 { 2 } else { 1 };
                let unit_cin = if u == 0 { cin } else { cout };
                out.push(UnitShape {
                    block: b + 1,
                    unit: u + 1,
                    cin: unit_cin,
                    cmid,
                    cout,
                    stride,
                    projection: stride != 1 || unit_cin != cout,
                });
            }
            cin = cout;
        }
        out
    }

    /// Every parameter: var-store name (`.`-separated, the npz key without `resnet/`) and
    /// shape in PyTorch layout (convs OIHW).
    pub fn parameters(&self, classes: i64) -> Vec<(String, Vec<i64>)> {
        let mut p = vec![("root_block.standardized_conv2d.kernel".to_owned(), vec![self.root_width, 3, 7, 7])];
        for u in self.unit_shapes() {
            let at = u.prefix('.');
            let norm = |sub: &str, c: i64| {
                [(format!("{at}.{sub}.group_norm.gamma"), vec![c]), (format!("{at}.{sub}.group_norm.beta"), vec![c])]
            };
            p.extend(norm("a", u.cin));
            p.push((format!("{at}.a.standardized_conv2d.kernel"), vec![u.cmid, u.cin, 1, 1]));
            if u.projection {
                p.push((format!("{at}.a.proj.standardized_conv2d.kernel"), vec![u.cout, u.cin, 1, 1]));
            }
            p.extend(norm("b", u.cmid));
            p.push((format!("{at}.b.standardized_conv2d.kernel"), vec![u.cmid, u.cmid, 3, 3]));
            p.extend(norm("c", u.cmid));
            p.push((format!("{at}.c.standardized_conv2d.kernel"), vec![u.cout, u.cmid, 1, 1]));
        }
        let feat = self.feature_dim();
        p.push(("group_norm.gamma".to_owned(), vec![feat]));
        p.push(("group_norm.beta".to_owned(), vec![feat]));
        p.push(("head.conv2d.kernel".to_owned(), vec![classes, feat, 1, 1]));
        p.push(("head.conv2d.bias".to_owned(), vec![classes]));
        p
    }

    /// Number of parameters with a `classes`-way head.
    pub fn param_count(&self, classes: i64) -> u64 {
        self.parameters(classes).iter().map(|(_, s)| s.iter().product::<i64>() as u64).sum()
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl FromStr for Variant {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Variant, TrainError> {
        Variant::by_name(s).ok_or_else(|| TrainError::UnknownVariant {
            name: s.to_owned(),
            known: VARIANTS.iter().map(|v| v.name).collect::<Vec<_>>().join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BIT_SPEC §3.7 (timm's param_count), in millions to two decimals.
    #[test]
    fn parameter_counts_match_the_spec_table() {
        let table = [
            ("r50x1", 25.55, 68.26),
            ("r50x3", 217.32, 345.40),
            ("r101x1", 44.54, 87.25),
            ("r101x3", 387.93, 516.02),
            ("r152x2", 236.34, 321.73),
            ("r152x4", 936.53, 1107.3),
        ];
        for (name, m1000, m21843) in table {
            let v = Variant::by_name(name).expect("known");
            for (classes, millions) in [(1000, m1000), (21843, m21843)] {
                let got = v.param_count(classes) as f64 / 1e6;
                let decimals = if millions > 1000.0 { 0.05 } else { 0.005 };
                assert!(
                    (got - millions).abs() <= decimals,
                    "{name} with {classes} classes: {got:.3}M, spec {millions}M"
                );
            }
        }
    }

    #[test]
    fn only_unit01_projects_and_strides_sit_on_blocks_2_to_4() {
        let v = Variant::by_name("r50x1").expect("known");
        let units = v.unit_shapes();
        assert_eq!(units.len(), 16);
        for u in &units {
            assert_eq!(u.projection, u.unit == 1, "{u:?}");
            assert_eq!(u.stride, if u.unit == 1 && u.block > 1 { 2 } else { 1 });
        }
        assert_eq!((units[0].cin, units[0].cmid, units[0].cout), (64, 64, 256));
        assert_eq!((units[15].cin, units[15].cmid, units[15].cout), (2048, 512, 2048));
        assert!(v.parameters(10).iter().all(|(_, s)| s.len() != 1 || s[0] % GROUPS == 0 || s[0] == 10));
    }

    #[test]
    fn names_parse() {
        assert_eq!("R152x4".parse::<Variant>().expect("ok").name, "r152x4");
        assert_eq!("BiT-M-R50x1".parse::<Variant>().expect("ok").name, "r50x1");
        assert!("r18".parse::<Variant>().is_err());
    }
}

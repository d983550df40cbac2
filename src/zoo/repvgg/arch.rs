//! The RepVGG family: named architectures (A0–B3g4) and custom layouts.

use crate::{Error, Result};

/// Blocks per stage 1–4 of the A family (stage 0 is one block).
const A_DEPTHS: [usize; 4] = [2, 4, 14, 1];
/// Blocks per stage 1–4 of the B family.
const B_DEPTHS: [usize; 4] = [4, 6, 16, 1];

/// A named architecture: name, depths, width multipliers `(a, b)`, groups on layers 2, 4, …, 26,
/// squeeze-and-excitation.
type Named = (&'static str, [usize; 4], (f64, f64), usize, bool);

/// Every named architecture.
const NAMED: &[Named] = &[
    ("A0", A_DEPTHS, (0.75, 2.5), 1, false),
    ("A1", A_DEPTHS, (1.0, 2.5), 1, false),
    ("A2", A_DEPTHS, (1.5, 2.75), 1, false),
    ("B0", B_DEPTHS, (1.0, 2.5), 1, false),
    ("B1", B_DEPTHS, (2.0, 4.0), 1, false),
    ("B1g2", B_DEPTHS, (2.0, 4.0), 2, false),
    ("B1g4", B_DEPTHS, (2.0, 4.0), 4, false),
    ("B2", B_DEPTHS, (2.5, 5.0), 1, false),
    ("B2g2", B_DEPTHS, (2.5, 5.0), 2, false),
    ("B2g4", B_DEPTHS, (2.5, 5.0), 4, false),
    ("B3", B_DEPTHS, (3.0, 5.0), 1, false),
    ("B3g2", B_DEPTHS, (3.0, 5.0), 2, false),
    ("B3g4", B_DEPTHS, (3.0, 5.0), 4, false),
    ("D2se", [8, 14, 24, 1], (2.5, 5.0), 1, true),
];

/// A RepVGG layout: five stages (stage 0 is a single stride-2 block; stages 1–4 start with a
/// stride-2 block), a global pool and a linear classifier.
///
/// The fields are private so that every `Arch` is a checked one: build with [`Arch::named`],
/// [`Arch::custom`] or [`Arch::new`], change the classes with [`Arch::with_classes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arch {
    /// A name for messages (`"A0"`, `"B1g2"`, `"custom"`, `"inferred"`).
    pub(super) name: String,
    /// Blocks in stages 1–4.
    pub(super) depths: [usize; 4],
    /// Output channels of stages 0–4.
    pub(super) widths: [usize; 5],
    /// Groups of every block, by layer index (0 = stage 0, then stage by stage).
    pub(super) groups: Vec<usize>,
    /// Classifier outputs.
    pub(super) classes: usize,
    /// Squeeze-and-excitation in every block (RepVGG-D2se).
    pub(super) se: bool,
}

impl Arch {
    /// A name for messages (`"A0"`, `"B1g2"`, `"custom"`, `"inferred"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Blocks in stages 1–4.
    pub fn depths(&self) -> [usize; 4] {
        self.depths
    }

    /// Output channels of stages 0–4.
    pub fn widths(&self) -> [usize; 5] {
        self.widths
    }

    /// Groups of every block, by layer index (0 = stage 0, then stage by stage).
    pub fn groups(&self) -> &[usize] {
        &self.groups
    }

    /// Classifier outputs.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Squeeze-and-excitation in every block (RepVGG-D2se).
    pub fn se(&self) -> bool {
        self.se
    }

    /// The names [`Arch::named`] knows.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMED.iter().map(|(n, ..)| *n)
    }

    /// A named architecture (`"A0"` … `"B3g4"`, case-insensitive, `RepVGG-` prefix optional).
    pub fn named(name: &str, classes: usize) -> Result<Arch> {
        let wanted = name.trim_start_matches("RepVGG-").trim_start_matches("repvgg-").to_ascii_lowercase();
        let Some(&(name, depths, multipliers, groups, se)) =
            NAMED.iter().find(|(n, ..)| n.to_ascii_lowercase() == wanted)
        else {
            let known: Vec<&str> = Arch::names().collect();
            return Err(Error::Architecture(format!(
                "unknown RepVGG architecture `{name}`; expected one of {}",
                known.join(", ")
            )));
        };
        Arch::custom(depths, multipliers, groups, classes).map(|arch| Arch { name: name.to_owned(), se, ..arch })
    }

    /// A custom layout: widths `min(64, 64a), 64a, 128a, 256a, 512b` and `groups` on layers
    /// 2, 4, …, 26 (the official code's `g2_map` / `g4_map`).
    pub fn custom(depths: [usize; 4], (a, b): (f64, f64), groups: usize, classes: usize) -> Result<Arch> {
        let widths = [
            64usize.min((64.0 * a) as usize),
            (64.0 * a) as usize,
            (128.0 * a) as usize,
            (256.0 * a) as usize,
            (512.0 * b) as usize,
        ];
        let layers = 1 + depths.iter().sum::<usize>();
        let groups = (0..layers).map(|l| if l % 2 == 0 && (2..=26).contains(&l) { groups } else { 1 }).collect();
        Arch::new("custom", depths, widths, groups, classes)
    }

    /// A layout given completely; checks that it is one.
    pub fn new(name: &str, depths: [usize; 4], widths: [usize; 5], groups: Vec<usize>, classes: usize) -> Result<Arch> {
        let layers = 1 + depths.iter().sum::<usize>();
        if groups.len() != layers {
            return Err(Error::Architecture(format!("{name}: {layers} layers but {} group counts", groups.len())));
        }
        if widths.contains(&0) || classes == 0 {
            return Err(Error::Architecture(format!(
                "{name}: widths {widths:?} and classes {classes} must be positive"
            )));
        }
        let arch = Arch { name: name.to_owned(), depths, widths, groups, classes, se: false };
        for layer in 0..layers {
            let (cin, cout, _) = arch.layer(layer);
            let g = arch.groups[layer];
            if g == 0 || cin % g != 0 || cout % g != 0 {
                return Err(Error::Architecture(format!(
                    "{name}: layer {layer} maps {cin} -> {cout} channels, which groups = {g} does not divide"
                )));
            }
        }
        Ok(arch)
    }

    /// The same layout with another classifier width, checked as [`Arch::new`] checks it.
    pub fn with_classes(self, classes: usize) -> Result<Arch> {
        let arch = Arch::new(&self.name, self.depths, self.widths, self.groups, classes)?;
        Ok(Arch { se: self.se, ..arch })
    }

    /// The same layout with (or without) squeeze-and-excitation in every block.
    pub fn with_se(self, se: bool) -> Arch {
        Arch { se, ..self }
    }

    /// Groups of the block at `layer` (1 past the end).
    pub fn groups_at(&self, layer: usize) -> usize {
        self.groups.get(layer).copied().unwrap_or(1)
    }

    /// First layer index of stage `stage` (0–4).
    pub fn first_layer(&self, stage: usize) -> usize {
        if stage == 0 { 0 } else { 1 + self.depths[..stage - 1].iter().sum::<usize>() }
    }

    /// `(C_in, C_out, stride)` of the block at `layer`.
    pub fn layer(&self, layer: usize) -> (usize, usize, usize) {
        if layer == 0 {
            return (3, self.widths[0], 2);
        }
        let stage = (1..=4).rev().find(|&s| layer >= self.first_layer(s)).unwrap_or(1);
        let index = layer - self.first_layer(stage);
        let cin = if index == 0 { self.widths[stage - 1] } else { self.widths[stage] };
        (cin, self.widths[stage], if index == 0 { 2 } else { 1 })
    }

    /// Total blocks.
    pub fn layers(&self) -> usize {
        1 + self.depths.iter().sum::<usize>()
    }

    /// The named architecture with this layout, if any (for messages).
    pub fn recognise(mut self) -> Arch {
        if let Some(name) = Arch::names().find(|n| Arch::named(n, self.classes).is_ok_and(|a| a.same_layout(&self))) {
            self.name = name.to_owned();
        }
        self
    }

    /// Same depths, widths, groups and SE (class count aside).
    pub fn same_layout(&self, other: &Arch) -> bool {
        self.depths == other.depths && self.widths == other.widths && self.groups == other.groups && self.se == other.se
    }
}

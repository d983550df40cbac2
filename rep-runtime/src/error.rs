//! The one error type of the runtime. Every message says what was expected and what was found.

use std::fmt;
use std::path::PathBuf;

/// Result alias used throughout `rep-runtime`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when building, running, fusing or loading layers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor has the wrong shape (weights given by hand, inputs, checkpoint entries).
    #[error("{what}: expected shape {expected:?}, found {found:?}")]
    Shape {
        /// What the tensor is (`"conv input"`, `"stage1.0.rbr_dense.conv.weight"`, …).
        what: String,
        /// The shape that was required (`0` stands for "any size" on that axis).
        expected: Vec<usize>,
        /// The shape that was given.
        found: Vec<usize>,
    },

    /// An input's channel count does not match the layer.
    #[error("{layer}: expected {expected} input channels, found {found}")]
    Channels {
        /// The layer that refused the input.
        layer: &'static str,
        /// Channels the layer was built for.
        expected: usize,
        /// Channels of the input.
        found: usize,
    },

    /// The spatial input is smaller than the (dilated) kernel after padding.
    #[error(
        "{layer}: input {height}x{width} padded by {pad_h}x{pad_w} is too small for the dilated kernel {kernel_h}x{kernel_w}"
    )]
    InputTooSmall {
        /// The layer that refused the input.
        layer: &'static str,
        /// Input height.
        height: usize,
        /// Input width.
        width: usize,
        /// Padding on each side of the height axis.
        pad_h: usize,
        /// Padding on each side of the width axis.
        pad_w: usize,
        /// Effective (dilated) kernel height: `d·(k − 1) + 1`.
        kernel_h: usize,
        /// Effective (dilated) kernel width.
        kernel_w: usize,
    },

    /// A convolution or pooling geometry is not valid on its own.
    #[error("invalid geometry: {0}")]
    Geometry(String),

    /// BatchNorm statistics or parameters that cannot be used (NaN, ∞, negative variance, eps ≤ 0, …).
    #[error("batch norm: {0}")]
    BatchNorm(String),

    /// A parameter, buffer or input that must be finite holds NaN or ±∞.
    #[error("{what}[{index}] is {value}; expected a finite number")]
    NonFinite {
        /// The tensor (`"stage1.0.rbr_dense.conv.weight"`, `"conv weight"`, …).
        what: String,
        /// Flat (row-major) index of the first non-finite value.
        index: usize,
        /// The value found there.
        value: f32,
    },

    /// A fusion step whose operands do not combine into one convolution.
    #[error("cannot fuse {what}: {reason}")]
    Fusion {
        /// The step or branch that was refused.
        what: String,
        /// Why, with the values that disagree.
        reason: String,
    },

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// An output path that is one of the command's inputs; writing it would destroy the input.
    #[error("refusing to write {output}: it is the same file as the input {input}")]
    SameFile {
        /// The path to be written.
        output: PathBuf,
        /// The input it resolves to.
        input: PathBuf,
    },

    /// A `.npy` file that cannot be read as the tensor asked for.
    #[error("{path}: not a usable .npy file: {reason}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong (dtype, dimension, a header that claims more data than the file holds, …).
        reason: String,
    },

    /// A safetensors file is malformed (truncated, bad header, …).
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// The parser's explanation.
        reason: String,
    },

    /// A checkpoint entry has a dtype that cannot become `f32`.
    #[error("{key}: unsupported dtype {dtype} (expected F32, F64, F16 or BF16)")]
    Dtype {
        /// The entry.
        key: String,
        /// Its dtype as written in the file.
        dtype: String,
    },

    /// A request the library does not implement yet, named.
    #[error("not supported: {0}")]
    Unsupported(String),

    /// A checkpoint that is not what was asked for (wrong architecture, unknown naming, …).
    #[error("{0}")]
    Checkpoint(String),

    /// An architecture that does not exist or is not consistent.
    #[error("{0}")]
    Architecture(String),

    /// A graph network wired wrongly: a source out of range, channels that do not meet, or a
    /// layer with an identity branch on a shortcut path (planned re-parameterization).
    #[error("graph wiring: {0}")]
    Wiring(String),

    /// Checkpoint and model disagree; every problem is listed, nothing was loaded.
    #[error("{0}")]
    StateDict(Mismatch),
}

impl Error {
    pub(crate) fn geometry(msg: impl Into<String>) -> Self {
        Error::Geometry(msg.into())
    }

    pub(crate) fn fusion(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Fusion { what: what.into(), reason: reason.into() }
    }

    /// The first non-finite value of `values` as an [`Error::NonFinite`] naming `what`.
    pub fn check_finite<'a>(what: &str, values: impl IntoIterator<Item = &'a f32>) -> Result<()> {
        match values.into_iter().enumerate().find(|(_, v)| !v.is_finite()) {
            Some((index, &value)) => Err(Error::NonFinite { what: what.to_owned(), index, value }),
            None => Ok(()),
        }
    }

    pub(crate) fn shape(what: impl Into<String>, expected: &[usize], found: &[usize]) -> Self {
        Error::Shape { what: what.into(), expected: expected.to_vec(), found: found.to_vec() }
    }
}

/// Everything that keeps a checkpoint from loading into a model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Names the model has and the checkpoint lacks.
    pub missing: Vec<String>,
    /// Names the checkpoint has and the model lacks.
    pub unexpected: Vec<String>,
    /// `(name, expected shape, found shape)`.
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl Mismatch {
    /// True when checkpoint and model agree.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
}

/// Lines shown per kind of problem before the rest is counted.
const SHOWN: usize = 8;

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checkpoint does not match the model ({} missing, {} unexpected, {} wrong shape); nothing was loaded",
            self.missing.len(),
            self.unexpected.len(),
            self.wrong_shape.len()
        )?;
        let mut list = |what: &str, lines: Vec<String>| -> fmt::Result {
            for line in lines.iter().take(SHOWN) {
                write!(f, "\n  {what} {line}")?;
            }
            if lines.len() > SHOWN {
                write!(f, "\n  … and {} more", lines.len() - SHOWN)?;
            }
            Ok(())
        };
        list("missing key:", self.missing.clone())?;
        list("unexpected key:", self.unexpected.clone())?;
        let wrong = self.wrong_shape.iter().map(|(n, e, g)| format!("{n}: expected {e:?}, found {g:?}")).collect();
        list("wrong shape for", wrong)?;
        for hint in self.hints() {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Key fragments of known namings, and what loads checkpoints written that way.
const NAMINGS: &[(&str, &str)] = &[
    ("module.", "the keys start with `module.` (a DataParallel checkpoint): load `state.strip_prefix(\"module\")`"),
    ("weight_orepa_", "these are the official OREPA names: convert them with `rep::zoo::orepa::from_official`"),
    ("dbb_origin", "these are the original DBB names: build with `rep::zoo::dbb::Dbb::from_state_dict`"),
    ("square_conv", "these are the original ACNet names: build with `rep::zoo::acnet::AcBlock::from_state_dict`"),
    (
        "rbr_conv.",
        "these are Apple's MobileOne names: build with `rep::zoo::mobileone::MobileOneBlock::from_state_dict`",
    ),
    ("conv_kxk", "these are timm's RepVGG names: load with `rep::zoo::repvgg::Checkpoint`, which reads them"),
    ("rbr_dense", "these are the official RepVGG names: load with `rep::zoo::repvgg::Checkpoint`"),
];

impl Mismatch {
    /// Suggestions for a checkpoint whose unexpected keys look like a known family's naming
    /// that the model does not use.
    pub fn hints(&self) -> Vec<&'static str> {
        let has = |keys: &[String], needle: &str| {
            keys.iter().any(|k| if needle == "module." { k.starts_with(needle) } else { k.contains(needle) })
        };
        NAMINGS
            .iter()
            .filter(|(needle, _)| has(&self.unexpected, needle) && !has(&self.missing, needle))
            .map(|(_, hint)| *hint)
            .collect()
    }
}

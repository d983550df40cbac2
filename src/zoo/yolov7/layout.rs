//! The YOLOv7 and YOLOv7-tiny layouts as data, node for node as the official
//! `cfg/training/yolov7.yaml` and `yolov7-tiny.yaml` list them (`[from, module(args)]`, base
//! widths before scaling). The networks are built from their declarations
//! ([`super::networks`]); these tables answer what must be known *before* building one: how
//! many convolution weights a checkpoint of a given width must hold (so that a file cannot make
//! us allocate more than it justifies), which layer gives the width, and what `summary` prints
//! per node. `tests/yolov7.rs` checks them against the declared networks at several widths.

use crate::zoo::yolo::Scaling;

/// One module of a layout, with its base (unscaled) output channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    /// YOLO's `Conv`: `(channels, kernel, stride)`, padding `kernel / 2`.
    Conv(usize, usize, usize),
    /// RepConv 3×3: `(channels, stride)`.
    RepConv(usize, usize),
    /// SPPCSPC: `(channels)`.
    Sppcspc(usize),
    /// `MP`: max pool 2×2, stride 2.
    MaxPool2,
    /// `SP(k)`: max pool k×k, stride 1, padding `k / 2`.
    Sp(usize),
    /// `Concat` along channels.
    Concat,
    /// `nn.Upsample(None, 2, 'nearest')`.
    Upsample2,
}

use Module::*;

/// A layout: its nodes (`from`, module).
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The nodes before the detection head, in order.
    pub nodes: &'static [(&'static [isize], Module)],
    /// A 1×1 `Conv` of the largest base width: its node, base output and base input channels.
    /// Its channels in a checkpoint give the width multiplier.
    pub widest: (usize, usize, usize),
}

/// `cfg/training/yolov7.yaml`: ELAN backbone, SPPCSPC, PANet neck, RepConv before IDetect.
pub const YOLOV7: Layout = Layout { nodes: YOLOV7_NODES, widest: (50, 1024, 1024) };

/// `cfg/training/yolov7-tiny.yaml`: LeakyReLU(0.1), SP pools instead of SPPCSPC, no RepConv.
pub const YOLOV7_TINY: Layout = Layout { nodes: YOLOV7_TINY_NODES, widest: (28, 512, 1024) };

#[rustfmt::skip]
const YOLOV7_NODES: &[(&[isize], Module)] = &[
    /*   0 */ (&[-1], Conv(32, 3, 1)),
    /*   1 */ (&[-1], Conv(64, 3, 2)),
    /*   2 */ (&[-1], Conv(64, 3, 1)),
    /*   3 */ (&[-1], Conv(128, 3, 2)),
    /*   4 */ (&[-1], Conv(64, 1, 1)),
    /*   5 */ (&[-2], Conv(64, 1, 1)),
    /*   6 */ (&[-1], Conv(64, 3, 1)),
    /*   7 */ (&[-1], Conv(64, 3, 1)),
    /*   8 */ (&[-1], Conv(64, 3, 1)),
    /*   9 */ (&[-1], Conv(64, 3, 1)),
    /*  10 */ (&[-1, -3, -5, -6], Concat),
    /*  11 */ (&[-1], Conv(256, 1, 1)),
    /*  12 */ (&[-1], MaxPool2),
    /*  13 */ (&[-1], Conv(128, 1, 1)),
    /*  14 */ (&[-3], Conv(128, 1, 1)),
    /*  15 */ (&[-1], Conv(128, 3, 2)),
    /*  16 */ (&[-1, -3], Concat),
    /*  17 */ (&[-1], Conv(128, 1, 1)),
    /*  18 */ (&[-2], Conv(128, 1, 1)),
    /*  19 */ (&[-1], Conv(128, 3, 1)),
    /*  20 */ (&[-1], Conv(128, 3, 1)),
    /*  21 */ (&[-1], Conv(128, 3, 1)),
    /*  22 */ (&[-1], Conv(128, 3, 1)),
    /*  23 */ (&[-1, -3, -5, -6], Concat),
    /*  24 */ (&[-1], Conv(512, 1, 1)),
    /*  25 */ (&[-1], MaxPool2),
    /*  26 */ (&[-1], Conv(256, 1, 1)),
    /*  27 */ (&[-3], Conv(256, 1, 1)),
    /*  28 */ (&[-1], Conv(256, 3, 2)),
    /*  29 */ (&[-1, -3], Concat),
    /*  30 */ (&[-1], Conv(256, 1, 1)),
    /*  31 */ (&[-2], Conv(256, 1, 1)),
    /*  32 */ (&[-1], Conv(256, 3, 1)),
    /*  33 */ (&[-1], Conv(256, 3, 1)),
    /*  34 */ (&[-1], Conv(256, 3, 1)),
    /*  35 */ (&[-1], Conv(256, 3, 1)),
    /*  36 */ (&[-1, -3, -5, -6], Concat),
    /*  37 */ (&[-1], Conv(1024, 1, 1)),
    /*  38 */ (&[-1], MaxPool2),
    /*  39 */ (&[-1], Conv(512, 1, 1)),
    /*  40 */ (&[-3], Conv(512, 1, 1)),
    /*  41 */ (&[-1], Conv(512, 3, 2)),
    /*  42 */ (&[-1, -3], Concat),
    /*  43 */ (&[-1], Conv(256, 1, 1)),
    /*  44 */ (&[-2], Conv(256, 1, 1)),
    /*  45 */ (&[-1], Conv(256, 3, 1)),
    /*  46 */ (&[-1], Conv(256, 3, 1)),
    /*  47 */ (&[-1], Conv(256, 3, 1)),
    /*  48 */ (&[-1], Conv(256, 3, 1)),
    /*  49 */ (&[-1, -3, -5, -6], Concat),
    /*  50 */ (&[-1], Conv(1024, 1, 1)),
    /*  51 */ (&[-1], Sppcspc(512)),
    /*  52 */ (&[-1], Conv(256, 1, 1)),
    /*  53 */ (&[-1], Upsample2),
    /*  54 */ (&[37], Conv(256, 1, 1)),
    /*  55 */ (&[-1, -2], Concat),
    /*  56 */ (&[-1], Conv(256, 1, 1)),
    /*  57 */ (&[-2], Conv(256, 1, 1)),
    /*  58 */ (&[-1], Conv(128, 3, 1)),
    /*  59 */ (&[-1], Conv(128, 3, 1)),
    /*  60 */ (&[-1], Conv(128, 3, 1)),
    /*  61 */ (&[-1], Conv(128, 3, 1)),
    /*  62 */ (&[-1, -2, -3, -4, -5, -6], Concat),
    /*  63 */ (&[-1], Conv(256, 1, 1)),
    /*  64 */ (&[-1], Conv(128, 1, 1)),
    /*  65 */ (&[-1], Upsample2),
    /*  66 */ (&[24], Conv(128, 1, 1)),
    /*  67 */ (&[-1, -2], Concat),
    /*  68 */ (&[-1], Conv(128, 1, 1)),
    /*  69 */ (&[-2], Conv(128, 1, 1)),
    /*  70 */ (&[-1], Conv(64, 3, 1)),
    /*  71 */ (&[-1], Conv(64, 3, 1)),
    /*  72 */ (&[-1], Conv(64, 3, 1)),
    /*  73 */ (&[-1], Conv(64, 3, 1)),
    /*  74 */ (&[-1, -2, -3, -4, -5, -6], Concat),
    /*  75 */ (&[-1], Conv(128, 1, 1)),
    /*  76 */ (&[-1], MaxPool2),
    /*  77 */ (&[-1], Conv(128, 1, 1)),
    /*  78 */ (&[-3], Conv(128, 1, 1)),
    /*  79 */ (&[-1], Conv(128, 3, 2)),
    /*  80 */ (&[-1, -3, 63], Concat),
    /*  81 */ (&[-1], Conv(256, 1, 1)),
    /*  82 */ (&[-2], Conv(256, 1, 1)),
    /*  83 */ (&[-1], Conv(128, 3, 1)),
    /*  84 */ (&[-1], Conv(128, 3, 1)),
    /*  85 */ (&[-1], Conv(128, 3, 1)),
    /*  86 */ (&[-1], Conv(128, 3, 1)),
    /*  87 */ (&[-1, -2, -3, -4, -5, -6], Concat),
    /*  88 */ (&[-1], Conv(256, 1, 1)),
    /*  89 */ (&[-1], MaxPool2),
    /*  90 */ (&[-1], Conv(256, 1, 1)),
    /*  91 */ (&[-3], Conv(256, 1, 1)),
    /*  92 */ (&[-1], Conv(256, 3, 2)),
    /*  93 */ (&[-1, -3, 51], Concat),
    /*  94 */ (&[-1], Conv(512, 1, 1)),
    /*  95 */ (&[-2], Conv(512, 1, 1)),
    /*  96 */ (&[-1], Conv(256, 3, 1)),
    /*  97 */ (&[-1], Conv(256, 3, 1)),
    /*  98 */ (&[-1], Conv(256, 3, 1)),
    /*  99 */ (&[-1], Conv(256, 3, 1)),
    /* 100 */ (&[-1, -2, -3, -4, -5, -6], Concat),
    /* 101 */ (&[-1], Conv(512, 1, 1)),
    /* 102 */ (&[75], RepConv(256, 1)),
    /* 103 */ (&[88], RepConv(512, 1)),
    /* 104 */ (&[101], RepConv(1024, 1)),
];

#[rustfmt::skip]
const YOLOV7_TINY_NODES: &[(&[isize], Module)] = &[
    /*  0 */ (&[-1], Conv(32, 3, 2)),
    /*  1 */ (&[-1], Conv(64, 3, 2)),
    /*  2 */ (&[-1], Conv(32, 1, 1)),
    /*  3 */ (&[-2], Conv(32, 1, 1)),
    /*  4 */ (&[-1], Conv(32, 3, 1)),
    /*  5 */ (&[-1], Conv(32, 3, 1)),
    /*  6 */ (&[-1, -2, -3, -4], Concat),
    /*  7 */ (&[-1], Conv(64, 1, 1)),
    /*  8 */ (&[-1], MaxPool2),
    /*  9 */ (&[-1], Conv(64, 1, 1)),
    /* 10 */ (&[-2], Conv(64, 1, 1)),
    /* 11 */ (&[-1], Conv(64, 3, 1)),
    /* 12 */ (&[-1], Conv(64, 3, 1)),
    /* 13 */ (&[-1, -2, -3, -4], Concat),
    /* 14 */ (&[-1], Conv(128, 1, 1)),
    /* 15 */ (&[-1], MaxPool2),
    /* 16 */ (&[-1], Conv(128, 1, 1)),
    /* 17 */ (&[-2], Conv(128, 1, 1)),
    /* 18 */ (&[-1], Conv(128, 3, 1)),
    /* 19 */ (&[-1], Conv(128, 3, 1)),
    /* 20 */ (&[-1, -2, -3, -4], Concat),
    /* 21 */ (&[-1], Conv(256, 1, 1)),
    /* 22 */ (&[-1], MaxPool2),
    /* 23 */ (&[-1], Conv(256, 1, 1)),
    /* 24 */ (&[-2], Conv(256, 1, 1)),
    /* 25 */ (&[-1], Conv(256, 3, 1)),
    /* 26 */ (&[-1], Conv(256, 3, 1)),
    /* 27 */ (&[-1, -2, -3, -4], Concat),
    /* 28 */ (&[-1], Conv(512, 1, 1)),
    /* 29 */ (&[-1], Conv(256, 1, 1)),
    /* 30 */ (&[-2], Conv(256, 1, 1)),
    /* 31 */ (&[-1], Sp(5)),
    /* 32 */ (&[-2], Sp(9)),
    /* 33 */ (&[-3], Sp(13)),
    /* 34 */ (&[-1, -2, -3, -4], Concat),
    /* 35 */ (&[-1], Conv(256, 1, 1)),
    /* 36 */ (&[-1, -7], Concat),
    /* 37 */ (&[-1], Conv(256, 1, 1)),
    /* 38 */ (&[-1], Conv(128, 1, 1)),
    /* 39 */ (&[-1], Upsample2),
    /* 40 */ (&[21], Conv(128, 1, 1)),
    /* 41 */ (&[-1, -2], Concat),
    /* 42 */ (&[-1], Conv(64, 1, 1)),
    /* 43 */ (&[-2], Conv(64, 1, 1)),
    /* 44 */ (&[-1], Conv(64, 3, 1)),
    /* 45 */ (&[-1], Conv(64, 3, 1)),
    /* 46 */ (&[-1, -2, -3, -4], Concat),
    /* 47 */ (&[-1], Conv(128, 1, 1)),
    /* 48 */ (&[-1], Conv(64, 1, 1)),
    /* 49 */ (&[-1], Upsample2),
    /* 50 */ (&[14], Conv(64, 1, 1)),
    /* 51 */ (&[-1, -2], Concat),
    /* 52 */ (&[-1], Conv(32, 1, 1)),
    /* 53 */ (&[-2], Conv(32, 1, 1)),
    /* 54 */ (&[-1], Conv(32, 3, 1)),
    /* 55 */ (&[-1], Conv(32, 3, 1)),
    /* 56 */ (&[-1, -2, -3, -4], Concat),
    /* 57 */ (&[-1], Conv(64, 1, 1)),
    /* 58 */ (&[-1], Conv(128, 3, 2)),
    /* 59 */ (&[-1, 47], Concat),
    /* 60 */ (&[-1], Conv(64, 1, 1)),
    /* 61 */ (&[-2], Conv(64, 1, 1)),
    /* 62 */ (&[-1], Conv(64, 3, 1)),
    /* 63 */ (&[-1], Conv(64, 3, 1)),
    /* 64 */ (&[-1, -2, -3, -4], Concat),
    /* 65 */ (&[-1], Conv(128, 1, 1)),
    /* 66 */ (&[-1], Conv(256, 3, 2)),
    /* 67 */ (&[-1, 37], Concat),
    /* 68 */ (&[-1], Conv(128, 1, 1)),
    /* 69 */ (&[-2], Conv(128, 1, 1)),
    /* 70 */ (&[-1], Conv(128, 3, 1)),
    /* 71 */ (&[-1], Conv(128, 3, 1)),
    /* 72 */ (&[-1, -2, -3, -4], Concat),
    /* 73 */ (&[-1], Conv(256, 1, 1)),
    /* 74 */ (&[57], Conv(128, 3, 1)),
    /* 75 */ (&[65], Conv(256, 3, 1)),
    /* 76 */ (&[73], Conv(512, 3, 1)),
];

impl Layout {
    /// The convolution weights (`C_in · C_out · k²` summed over every conv before the head,
    /// SPPCSPC's included) of the network at `scaling`, counted without building it: every
    /// checkpoint of that network, train-time or fused, holds at least this many values, so a
    /// file holding fewer cannot be it (and cannot make us allocate more than it justifies).
    pub fn conv_weights(&self, scaling: &Scaling) -> u64 {
        let mut channels: Vec<u64> = Vec::with_capacity(self.nodes.len());
        let mut weights = 0u64;
        for (i, &(from, module)) in self.nodes.iter().enumerate() {
            let source = |f: isize| {
                if f < 0 { i.checked_sub(f.unsigned_abs()).map_or(3, |j| channels[j]) } else { channels[f as usize] }
            };
            let c_in = source(from[0]);
            let scaled = |c: usize| scaling.channels(c) as u64;
            let out = match module {
                Conv(c, k, _) => {
                    weights = weights.saturating_add(c_in * scaled(c) * (k * k) as u64);
                    scaled(c)
                }
                RepConv(c, _) => {
                    weights = weights.saturating_add(c_in * scaled(c) * 9);
                    scaled(c)
                }
                Sppcspc(c) => {
                    let h = scaled(c);
                    // cv1, cv2: c_in → h; cv3, cv6: 3×3 h → h; cv4: h → h; cv5: 4h → h; cv7: 2h → out.
                    let sum = 2 * c_in * h + 2 * 9 * h * h + h * h + 4 * h * h + 2 * h * h;
                    weights = weights.saturating_add(sum);
                    h
                }
                Concat => from.iter().map(|&f| source(f)).sum(),
                MaxPool2 | Sp(_) | Upsample2 => c_in,
            };
            channels.push(out);
        }
        weights
    }

    /// The index of the detection head (`model.{head}.*`): one past the last node.
    pub fn head_index(&self) -> usize {
        self.nodes.len()
    }
}

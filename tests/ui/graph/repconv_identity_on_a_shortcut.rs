// YOLOv7's planned re-parameterization: a RepConv that keeps its identity branch (8 → 8,
// stride 1) inside an ELAN-style concatenation, whose input (`cv1`) also reaches the concat.
use rep::zoo::yolo::{ConvBnSilu, RepConv};

#[rep::graph]
pub struct Elan {
    cv1: ConvBnSilu<16, 8, 1, 1>,
    rep: RepConv<8, 8, 1, 1>,
    #[rep(from = (-1, 0))]
    cat: Concat,
}

fn main() {}

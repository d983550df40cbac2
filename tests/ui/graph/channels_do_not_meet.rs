use rep::zoo::yolo::ConvBnSilu;

#[rep::graph]
pub struct Net {
    a: ConvBnSilu<3, 8, 3, 1>,
    b: ConvBnSilu<8, 4, 3, 1>,
    #[rep(from = (-1, 0))]
    cat: Concat,
    // The concatenation gives 12 channels.
    out: ConvBnSilu<16, 8, 1, 1>,
    #[rep(from = (-1, 1))]
    sum: Add,
}

fn main() {}

use rep::zoo::yolo::ConvBnSilu;

#[rep::graph]
pub struct Net {
    a: ConvBnSilu<3, 8, 3, 1>,
    #[rep(from = -3)]
    b: ConvBnSilu<8, 8, 3, 1>,
    #[rep(from = (-1, 7))]
    cat: Concat,
    #[rep(from = (0, 1))]
    c: ConvBnSilu<16, 8, 1, 1>,
    #[rep(from = -0)]
    d: ConvBnSilu<8, 8, 1, 1>,
}

fn main() {}

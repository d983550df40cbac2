use rep::zoo::yolo::ConvBnSilu;

#[rep::graph(outputs(a, missing, a))]
pub struct Net {
    a: ConvBnSilu<3, 8, 3, 1>,
    b: ConvBnSilu<8, 8, 3, 1>,
}

fn main() {}

use rep::zoo::yolo::ConvBnSilu;

#[rep::graph(layer = MyLayer)]
pub struct Net {
    a: ConvBnSilu<3, 8, 3, 1>,
}

fn main() {}

use rep::zoo::yolo::ConvBnSilu;

#[rep::graph]
pub struct Net {
    a: ConvBnSilu<3, 8, 3, 1>,
    act: Silu,
    up: Upsample,
    #[rep(form = -1)]
    pool: MaxPool<2>,
    #[rep(graph)]
    cat: Concat,
}

fn main() {}

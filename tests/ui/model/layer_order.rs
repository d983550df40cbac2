#[rep::block(post(relu))]
pub struct RepVgg<Cin, Cout, S> {
    dense: ConvBn<Cin, Cout, 3, S>,
}

#[rep::model(new(depth: usize), strict)]
pub struct Net {
    stem: RepVgg<3, 16, 2>,
    head: Linear<16, 10>,
    stage: Vec<RepVgg<16, 16, 1>>,
    #[rep(repeat = depth)]
    pool: GlobalAvgPool,
}

fn main() {}

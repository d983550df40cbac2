// BatchNorm options that cannot work: ε must be positive, the momentum in [0, 1].
#[rep::block]
pub struct NoEps<C> {
    dense: ConvBn<C, C, 3, 1, Eps<0.0>>,
}

#[rep::block(post(bn(momentum = 1.5)))]
pub struct Momentum<C> {
    dense: Conv<C, C, 3>,
}

fn main() {}

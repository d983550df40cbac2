#[rep::block]
pub struct Wrong<C> {
    dense: ConvBn<C, C, 3>,
    identity: Option<Bn<C>>,
    #[rep(when = C == 8)]
    pointwise: ConvBn<C, C, 1>,
}

fn main() {}

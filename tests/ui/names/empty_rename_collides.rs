// `rename = ""` puts a branch's weights under the block itself: `dense`'s `conv.weight` is
// then the same key as the `weight` of the branch named `conv`.
#[rep::block]
pub struct Flat<C> {
    #[rep(rename = "")]
    dense: ConvBn<C, C, 3>,
    conv: Conv<C, C, 1>,
}

fn main() {}

#[rep::block(post(relu))]
pub struct Block<'a, C> {
    dense: ConvBn<C, C, 3>,
}
fn main() {}

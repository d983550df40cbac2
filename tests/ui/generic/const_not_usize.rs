#[rep::block(post(relu))]
pub struct Block<const C: u32> {
    dense: ConvBn<C, C, 3>,
}
fn main() {}

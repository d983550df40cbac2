#[rep::block]
pub struct Wrong<Cin> {
    dense: ConvBn<Cin, Cout, 3>,
}

fn main() {}

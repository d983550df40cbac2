// Zero channels and a zero stride, with literal sizes: decided by the macro.
#[rep::block]
pub struct Zero {
    dense: ConvBn<8, 0, 3>,
}

#[rep::block]
pub struct NoStride {
    dense: ConvBn<8, 8, 3, 0>,
}

fn main() {}

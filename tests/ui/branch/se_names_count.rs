// `se(names(…))` names the reducing and the expanding conv: two names.
#[rep::block(post(se(hidden = 4, names("reduce")), relu))]
pub struct Block<C> {
    dense: ConvBn<C, C, 3>,
}

fn main() {}

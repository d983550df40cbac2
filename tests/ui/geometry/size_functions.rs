// Size expressions may call max, div_ceil and make_divisible with two arguments; anything else
// is an error naming what is allowed.
#[rep::block(post(se(hidden = make_divisible(Cout / 16))))]
pub struct Block<Cin, Cout> {
    dense: ConvBn<Cin, Cout, 3>,
    pointwise: ConvBn<Cin, { round(Cout) }, 1>,
}

fn main() {}
